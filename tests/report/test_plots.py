import itertools
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from focalcal.metrics.binning import Bins, equal_width_edges
from focalcal.report import plot_reliability, plots, reliability_figure, save_reliability_diagram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_BINS = 10


def reference(confidence, correct, num_bins=NUM_BINS):
    """Per bin (b/B, (b+1)/B], 0 in the first: count, accuracy, mean confidence, in numpy."""
    index = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=num_bins) / count
        mean_confidence = np.bincount(index, weights=confidence, minlength=num_bins) / count
    filled = count > 0
    ece = np.sum(count[filled] / count.sum() * np.abs(accuracy - mean_confidence)[filled])
    return count, accuracy, mean_confidence, ece


def sample(seed, groups):
    """Confidences drawn uniformly inside the given ranges, correct with the given rates."""
    rng = np.random.default_rng(seed)
    confidence, correct = [], []
    for low, high, size, rate in groups:
        confidence.append(rng.uniform(low, high, size))
        correct.append(rng.random(size) < rate)
    return np.concatenate(confidence), np.concatenate(correct)


# Bins 0-2, 4, 5, 7 and 8 stay empty; bin 3 is under-confident, bins 6 and 9 over-confident.
OVER_AND_UNDER = sample(0, [(0.31, 0.39, 60, 0.8), (0.61, 0.69, 90, 0.4), (0.905, 1.0, 300, 0.7)])
# A nearly calibrated model: accuracy close to the confidence in every bin.
CALIBRATED = sample(1, [(0.41, 0.59, 200, 0.5), (0.71, 0.79, 150, 0.75), (0.91, 0.99, 400, 0.95)])


def to_bins(confidence, correct, num_bins=NUM_BINS):
    confidence = torch.from_numpy(confidence)
    edges = equal_width_edges(num_bins)
    return Bins.top_label(confidence, torch.from_numpy(correct), edges)


def panels():
    return {"before T": to_bins(*OVER_AND_UNDER), "after T": to_bins(*CALIBRATED)}


def columns(figure):
    """(reliability axes, histogram axes) per panel, top axes told apart by their titles."""
    top = [axes for axes in figure.axes if axes.get_title()]
    bottom = [axes for axes in figure.axes if not axes.get_title()]
    return list(zip(top, bottom, strict=True))


def bars(axes, label):
    (container,) = [c for c in axes.containers if c.get_label() == label]
    return list(container.patches)


def legend_entries(figure):
    (legend,) = figure.legends
    return {
        text.get_text(): handle
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }


def bin_of(patch, num_bins=NUM_BINS):
    position = patch.get_x() * num_bins
    assert position == pytest.approx(round(position), abs=1e-9)
    assert patch.get_width() == pytest.approx(1 / num_bins, rel=1e-12)
    return round(position)


def png_size(data):
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_one_reliability_and_one_histogram_axes_per_panel():
    figure = reliability_figure(panels())
    figure.canvas.draw()  # constrained layout places the axes when drawing
    assert len(figure.axes) == 4
    pairs = columns(figure)
    assert [top.get_title().split(" — ")[0] for top, _ in pairs] == ["before T", "after T"]
    for (left, _), (right, _) in itertools.pairwise(pairs):
        assert left.get_position().x1 < right.get_position().x0  # side by side
    for top, histogram in pairs:
        upper, lower = top.get_position(), histogram.get_position()
        assert upper.y0 > lower.y1  # the histogram is underneath
        assert upper.height > 2 * lower.height  # and smaller
        assert (upper.x0, upper.x1) == pytest.approx((lower.x0, lower.x1), abs=1e-6)
        assert top.get_xlim() == histogram.get_xlim() == (0, 1)
        assert top.get_ylim() == (0, 1)
        assert histogram.get_xlabel()
    assert pairs[0][0].get_ylabel() and pairs[0][1].get_ylabel()  # the first column names y


@pytest.mark.parametrize("data", [OVER_AND_UNDER, CALIBRATED], ids=["over-under", "calibrated"])
def test_accuracy_bars_match_an_independent_computation(data):
    count, accuracy, _, _ = reference(*data)
    ((top, _),) = columns(reliability_figure({"model": to_bins(*data)}))
    drawn = {bin_of(bar): bar for bar in bars(top, "accuracy")}
    assert sorted(drawn) == np.flatnonzero(count).tolist()  # exactly the non-empty bins
    for b, bar in drawn.items():
        assert bar.get_y() == 0
        assert bar.get_height() == pytest.approx(accuracy[b], rel=1e-12)


def test_gap_bars_span_accuracy_to_confidence_coloured_by_the_sign():
    count, accuracy, confidence, _ = reference(*OVER_AND_UNDER)
    figure = reliability_figure({"model": to_bins(*OVER_AND_UNDER)})
    legend = legend_entries(figure)
    over = to_rgba(legend["Gap: over-confident"].get_edgecolor())
    under = to_rgba(legend["Gap: under-confident"].get_edgecolor())
    assert over != under
    ((top, _),) = columns(figure)
    gaps = {bin_of(bar): bar for bar in bars(top, "gap")}
    assert sorted(gaps) == np.flatnonzero(count).tolist()
    signs = {b: confidence[b] > accuracy[b] for b in gaps}
    assert set(signs.values()) == {True, False}  # the data holds both kinds of bins
    for b, bar in gaps.items():
        low, high = sorted((accuracy[b], confidence[b]))
        # the bins' mean confidence comes from fixed-point sums: within 2^-25 of numpy's
        assert bar.get_y() == pytest.approx(low, abs=2**-25)
        assert bar.get_y() + bar.get_height() == pytest.approx(high, abs=2**-25)
        assert to_rgba(bar.get_edgecolor()) == (over if signs[b] else under)


def test_gap_colours_are_distinct_in_greyscale_and_hatching():
    legend = legend_entries(reliability_figure(panels()))
    over, under = legend["Gap: over-confident"], legend["Gap: under-confident"]

    def luminance(color):
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in color[:3]]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    assert (
        abs(luminance(to_rgba(over.get_edgecolor())) - luminance(to_rgba(under.get_edgecolor())))
        > 0.1
    )
    assert over.get_hatch() and under.get_hatch() and over.get_hatch() != under.get_hatch()
    accuracy = to_rgba(legend["Accuracy per bin"].get_facecolor())
    assert accuracy not in (to_rgba(over.get_edgecolor()), to_rgba(under.get_edgecolor()))


def test_single_filled_bin_draws_one_bar_of_each():
    data = sample(2, [(0.71, 0.79, 25, 0.5)])
    ((top, histogram),) = columns(reliability_figure({"model": to_bins(*data)}))
    assert [bin_of(bar) for bar in bars(top, "accuracy")] == [7]
    assert [bin_of(bar) for bar in bars(top, "gap")] == [7]
    assert [bin_of(bar) for bar in bars(histogram, "fraction")] == [7]
    assert bars(histogram, "fraction")[0].get_height() == 1


def test_titles_hold_the_name_and_the_ece_in_percent():
    figure = reliability_figure(panels())
    for (top, _), (name, data) in zip(
        columns(figure), [("before T", OVER_AND_UNDER), ("after T", CALIBRATED)], strict=True
    ):
        match = re.fullmatch(rf"{re.escape(name)} — ECE (\d+\.\d\d) %", top.get_title())
        assert match, top.get_title()
        expected = 100 * reference(*data)[3]
        assert float(match.group(1)) == pytest.approx(expected, abs=0.005 + 1e-9)
    eces = [100 * reference(*data)[3] for data in (OVER_AND_UNDER, CALIBRATED)]
    assert eces[0] > 5 and eces[1] < 3  # the two titles show clearly different numbers


def test_histogram_is_the_fraction_per_bin_with_accuracy_and_confidence_lines():
    confidence, correct = OVER_AND_UNDER
    count = reference(confidence, correct)[0]
    ((_, histogram),) = columns(reliability_figure({"model": to_bins(confidence, correct)}))
    heights = {bin_of(bar): bar.get_height() for bar in bars(histogram, "fraction")}
    assert sum(heights.values()) == pytest.approx(1, abs=1e-12)
    assert sorted(heights) == np.flatnonzero(count).tolist()
    for b, height in heights.items():
        assert height == pytest.approx(count[b] / len(confidence), rel=1e-12)
    lines = {line.get_label(): line.get_xdata() for line in histogram.get_lines()}
    assert lines["accuracy"][0] == pytest.approx(correct.mean(), rel=1e-12)
    assert lines["mean confidence"][0] == pytest.approx(confidence.mean(), abs=1e-9)


def test_each_histogram_bar_is_labelled_with_its_sample_count():
    ((_, histogram),) = columns(reliability_figure({"model": to_bins(*OVER_AND_UNDER)}))
    count = reference(*OVER_AND_UNDER)[0]
    labels = {round(text.xy[0] * NUM_BINS - 0.5): text.get_text() for text in histogram.texts}
    assert labels == {b: str(count[b]) for b in np.flatnonzero(count)}


# Bin 3 holds 5 samples, bin 6 holds 9, bin 9 holds 300.
SPARSE = sample(4, [(0.31, 0.39, 5, 0.8), (0.61, 0.69, 9, 0.4), (0.905, 1.0, 300, 0.7)])


@pytest.mark.parametrize(("min_count", "faded"), [(10, {3, 6}), (6, {3}), (0, set())])
def test_bins_below_the_minimum_count_are_faded(min_count, faded):
    figure = reliability_figure({"model": to_bins(*SPARSE)}, min_count=min_count)
    ((top, histogram),) = columns(figure)
    assert reference(*SPARSE)[0][[3, 6, 9]].tolist() == [5, 9, 300]
    for patches in (bars(top, "accuracy"), bars(top, "gap"), bars(histogram, "fraction")):
        alphas = {bin_of(bar): bar.get_alpha() for bar in patches}
        assert sorted(alphas) == [3, 6, 9]
        assert {b for b, alpha in alphas.items() if alpha is not None} == faded
        assert all(alphas[b] == plots.FADED_ALPHA < 1 for b in faded)
    entry = f"Bin of < {min_count} samples"
    assert (entry in legend_entries(figure)) == bool(faded)


def test_histogram_height_follows_the_tallest_bar_of_all_panels():
    cases = [
        (panels(), (OVER_AND_UNDER, CALIBRATED)),
        ({"alone": to_bins(*CALIBRATED)}, (CALIBRATED,)),
    ]
    highs = []
    for drawn, data in cases:
        tallest = max(reference(*d)[0].max() / len(d[0]) for d in data)
        for _, histogram in columns(reliability_figure(drawn)):
            low, high = histogram.get_ylim()
            assert low == 0 and high == pytest.approx(plots._HEADROOM * tallest, rel=1e-12)
            assert max(bar.get_height() for bar in bars(histogram, "fraction")) < high
            highs.append(high)
    assert highs[0] == highs[1] != highs[2]  # shared by the panels of a figure, set by the data
    assert highs[2] < 1  # 0.53 of the samples in the tallest bin: a 0-1 axis would waste room


def test_title_names_the_figure():
    assert reliability_figure(panels(), title="cifar10 · resnet50 · CE").get_suptitle() == (
        "cifar10 · resnet50 · CE"
    )
    assert reliability_figure(panels()).get_suptitle() == ""


def test_png_has_signature_and_pixel_size(tmp_path):
    path = save_reliability_diagram(panels(), tmp_path / "figure.png", figsize=(4, 3), dpi=50)
    assert path == tmp_path / "figure.png"
    assert png_size(path.read_bytes()) == (200, 150)


def test_default_size_is_per_panel(tmp_path):
    one = save_reliability_diagram({"a": to_bins(*CALIBRATED)}, tmp_path / "one.png", dpi=20)
    three = save_reliability_diagram(
        {**panels(), "c": to_bins(*CALIBRATED)}, tmp_path / "three.png", dpi=20
    )
    (width_one, height_one), (width_three, height_three) = (
        png_size(one.read_bytes()),
        png_size(three.read_bytes()),
    )
    assert (width_one, height_one) == (68, 92)  # 3.4 x 4.6 inches at 20 dpi
    assert height_three == height_one
    assert width_three == pytest.approx(3 * width_one, abs=1)


def test_save_creates_parents_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "figure.png"
    returned = save_reliability_diagram(panels(), str(path), dpi=30)
    assert returned == path
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]
    save_reliability_diagram(panels(), path, dpi=30)  # overwriting works the same way
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]


def test_interrupted_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "figure.png"
    path.write_bytes(b"old figure")

    def interrupted(self, target, **kwargs):
        if hasattr(target, "write"):
            target.write(PNG_SIGNATURE + b"partial")
        else:
            Path(target).write_bytes(PNG_SIGNATURE + b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_reliability_diagram(panels(), path)
    assert path.read_bytes() == b"old figure"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_vector_formats_follow_the_suffix(tmp_path):
    assert save_reliability_diagram(panels(), tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in save_reliability_diagram(panels(), tmp_path / "f.svg").read_bytes()[:1000]


def test_unknown_format_raises_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="'xyz'"):
        save_reliability_diagram(panels(), tmp_path / "figure.xyz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("from_probs", [False, True])
def test_plot_reliability_bins_the_top_label_confidence(tmp_path, monkeypatch, from_probs):
    generator = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(400, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(5, (400,), generator=generator)
    probs = torch.softmax(logits, dim=1)
    seen = {}
    original = plots.save_reliability_diagram

    def spy(drawn, path):
        seen.update(drawn)
        return original(drawn, path)

    monkeypatch.setattr(plots, "save_reliability_diagram", spy)
    scores = probs if from_probs else logits
    path = plot_reliability(
        scores, labels, tmp_path / "r.png", num_bins=12, from_probs=from_probs, name="CE"
    )
    assert png_size(path.read_bytes())[0] > 0
    confidence = probs.max(dim=1).values.numpy()
    correct = (probs.argmax(dim=1) == labels).numpy()
    count, accuracy, _, _ = reference(confidence, correct, num_bins=12)
    assert list(seen) == ["CE"]
    assert seen["CE"].count.tolist() == count.tolist()
    np.testing.assert_allclose(seen["CE"].accuracy().numpy(), accuracy, rtol=1e-12)


def test_plot_reliability_checks_its_inputs(tmp_path):
    logits, labels = torch.randn(10, 3), torch.randint(3, (10,))
    with pytest.raises(ValueError, match="num_bins"):
        plot_reliability(logits, labels, tmp_path / "r.png", num_bins=0)
    with pytest.raises(ValueError, match="labels shape"):
        plot_reliability(logits, labels[:5], tmp_path / "r.png")
    with pytest.raises(ValueError, match="probabilities"):
        plot_reliability(logits, labels, tmp_path / "r.png", from_probs=True)
    assert list(tmp_path.iterdir()) == []


def test_no_panels_raises():
    with pytest.raises(ValueError, match="panels is empty"):
        reliability_figure({})


def test_classwise_bins_raise():
    probs = torch.softmax(torch.randn(20, 4, dtype=torch.float64), dim=1)
    classwise = Bins.classwise(probs, torch.randint(4, (20,)), NUM_BINS)
    with pytest.raises(
        ValueError, match=r"panel 'per class' holds class-wise bins of shape \(4, 10\)"
    ):
        reliability_figure({"fine": to_bins(*CALIBRATED), "per class": classwise})


def test_panel_without_samples_raises(tmp_path):
    empty = to_bins(np.empty(0), np.empty(0, dtype=bool))
    with pytest.raises(ValueError, match="panel 'empty' holds no samples"):
        save_reliability_diagram({"fine": to_bins(*CALIBRATED), "empty": empty}, tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []


def test_panel_that_is_not_bins_raises():
    with pytest.raises(ValueError, match="panel 'model' must be Bins, got Tensor"):
        reliability_figure({"model": torch.zeros(10)})


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'focalcal[plots]'")):
        reliability_figure(panels())


def test_import_is_lazy_and_pyplot_is_never_used():
    script = textwrap.dedent(
        """
        import sys
        import torch
        import focalcal.report
        from focalcal.metrics.binning import Bins, equal_width_edges
        assert "matplotlib" not in sys.modules, "importing focalcal.report imported matplotlib"
        edges = equal_width_edges(5)
        bins = Bins.top_label(torch.tensor([0.3, 0.9]), torch.tensor([True, False]), edges)
        focalcal.report.reliability_figure({"model": bins})
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules, "drawing imported pyplot"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
