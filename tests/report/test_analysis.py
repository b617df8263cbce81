"""The paper's analysis figures: panels, y-limits the first epoch does not set, the mean ± sd
band against an independent computation, and the reliability diagrams of several losses."""

import random
import re
import statistics

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection

from focalcal.report import analysis_figure, mean_curve, reliability_by_loss_figure
from focalcal.report.analysis import ANALYSIS_PANELS
from focalcal.report.cells import loss_label

EPOCHS = range(1, 11)
NLL_KEYS = ("test_nll_correct", "test_nll_incorrect", "test_entropy")


def history(seed, rise=0.02):
    """Epoch 1 ten times any later value (an untrained model); afterwards the NLL of both kinds
    rises slowly, as the paper's Figure 2 shows for cross-entropy, and the weight norm grows."""
    rng = random.Random(seed)
    records = []
    for epoch in EPOCHS:
        later = {
            "test_nll_correct": 0.2 + rise * epoch,
            "test_nll_incorrect": 1.5 + 5 * rise * epoch,
            "test_entropy": 0.6 - 0.03 * epoch,
        }
        values = {key: 10 * (0.2 + 5 * rise * 10 + 1.5) if epoch == 1 else value
                  for key, value in later.items()}  # fmt: skip
        noisy = {key: value + rng.gauss(0, 0.01) for key, value in values.items()}
        records.append({"epoch": epoch, **noisy, "weight_norm": 2 + 0.5 * epoch})
    return records


def losses(seeds):
    """Two losses, labelled as the tables label them, each with ``seeds`` runs."""
    return {
        loss_label("ce"): [history(seed) for seed in range(seeds)],
        loss_label("flsd-53"): [history(100 + seed, rise=0.005) for seed in range(seeds)],
    }


def bands(axes):
    return [c for c in axes.collections if isinstance(c, PolyCollection)]


def test_one_panel_per_quantity_one_line_per_loss_named_as_in_the_tables():
    figure = analysis_figure(losses(1), title="cifar10 · resnet50")
    assert [axes.get_title() for axes in figure.axes] == [panel[0] for panel in ANALYSIS_PANELS]
    assert [len(axes.get_lines()) for axes in figure.axes] == [2, 2, 2, 2]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["CE", "FLSD-53"]
    assert figure.get_suptitle() == "cifar10 · resnet50"  # a single seed: no band to explain
    assert all(axes.get_xlabel() == "Epoch" for axes in figure.axes)


def test_the_papers_nine_losses_get_nine_colours():
    names = ["ce", "brier", "mmce", "ls-0.05", "fl-3", "flsd-53", "flsd-532", "fl-4.85", "flsc-531"]
    figure = analysis_figure({loss_label(name): [history(0)] for name in names})
    for axes in figure.axes:
        assert len({line.get_color() for line in axes.get_lines()}) == len(names)


def test_only_the_logged_quantities_get_a_panel():
    without_analysis = {
        "CE": [[{"epoch": r["epoch"], "weight_norm": r["weight_norm"]} for r in history(0)]]
    }
    figure = analysis_figure(without_analysis)
    assert [axes.get_title() for axes in figure.axes] == ["Last-layer weight norm"]
    with pytest.raises(ValueError, match="hold none of test_nll_correct"):
        analysis_figure({"CE": [[{"epoch": 1, "val_nll": 1.0}]]})


def test_the_first_epoch_does_not_set_the_nll_and_entropy_scale():
    runs = losses(1)
    figure = analysis_figure(runs)
    for axes, (_, _, key, _) in zip(figure.axes, ANALYSIS_PANELS, strict=True):
        low, high = axes.get_ylim()
        values = [record[key] for group in runs.values() for h in group for record in h]
        first = [h[0][key] for group in runs.values() for h in group]
        later = [record[key] for group in runs.values() for h in group for record in h[1:]]
        if key in NLL_KEYS:
            assert min(first) > 5 * max(later)  # the data: epoch 1 dwarfs the rest
            assert low <= min(later) and max(later) <= high  # every later point in view
            assert high < min(first) / 5  # the first epoch's points run off the top
            assert high - low < 2 * (max(later) - min(later))  # the late trend fills the panel
        else:  # the weight norm keeps its start in view
            assert low <= min(values) and max(values) <= high


def test_several_seeds_draw_the_mean_and_a_band_of_one_standard_deviation():
    runs = losses(3)
    figure = analysis_figure(runs)
    assert "mean ± sd over 3 seeds" in figure.get_suptitle()
    for axes, (_, _, key, _) in zip(figure.axes, ANALYSIS_PANELS, strict=True):
        assert len(bands(axes)) == 2  # one per loss
        for line, band, group in zip(axes.get_lines(), bands(axes), runs.values(), strict=True):
            means = [statistics.mean(h[e - 1][key] for h in group) for e in EPOCHS]
            sds = [statistics.stdev(h[e - 1][key] for h in group) for e in EPOCHS]
            assert line.get_xdata().tolist() == list(EPOCHS)
            np.testing.assert_allclose(line.get_ydata(), means, rtol=1e-12)
            vertices = np.concatenate([path.vertices for path in band.get_paths()])
            for epoch, mean, sd in zip(EPOCHS, means, sds, strict=True):
                at = vertices[np.isclose(vertices[:, 0], epoch), 1]
                assert at.min() == pytest.approx(mean - sd, rel=1e-9)
                assert at.max() == pytest.approx(mean + sd, rel=1e-9)


def test_a_single_seed_draws_no_band():
    figure = analysis_figure({"CE": [history(0)], "FL-3": [history(1), history(2)]})
    assert [len(bands(axes)) for axes in figure.axes] == [1, 1, 1, 1]  # FL-3's only
    assert figure.get_suptitle() == "mean ± sd over 2 seeds (shaded)"
    assert len(bands(analysis_figure({"CE": [history(0)]}).axes[0])) == 0


def test_mean_curve_keeps_the_epochs_every_run_logged_finite():
    runs = [
        [{"epoch": 1, "x": 1.0}, {"epoch": 2, "x": float("nan")}, {"epoch": 3, "x": 3.0}],
        [{"epoch": 1, "x": 3.0}, {"epoch": 2, "x": 2.0}, {"epoch": 3, "x": 5.0}, {"epoch": 4}],
    ]
    epochs, mean, sd = mean_curve(runs, "x")
    assert epochs.tolist() == [1, 3] and mean.tolist() == [2.0, 4.0]
    assert sd.tolist() == pytest.approx([2**0.5, 2**0.5])
    assert mean_curve(runs[:1], "x")[2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("histories", "message"),
    [
        ({}, "histories is empty"),
        ({"CE": []}, r"histories\['CE'\] must be a non-empty list"),
        ({"CE": history(0)}, r"histories\['CE'\] must hold lists of records"),  # not [history]
        ({"CE": [[{"test_entropy": 1.0}]]}, "with 'epoch'"),
    ],
)
def test_bad_histories_are_named(histories, message):
    with pytest.raises(ValueError, match=message):
        analysis_figure(histories)


def test_reliability_by_loss_draws_one_row_of_panels_on_shared_axes():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(600, 10, generator=generator, dtype=torch.float64)
    labels = torch.randint(10, (600,), generator=generator)
    labels[:300] = logits[:300].argmax(1)
    figure = reliability_by_loss_figure(
        {"CE": (2 * logits, labels), "FLSD-53": (logits / 2, labels)},
        num_bins=10,
        title="cifar10 · resnet50",
    )
    figure.canvas.draw()
    top = [axes for axes in figure.axes if axes.get_title()]
    bottom = [axes for axes in figure.axes if not axes.get_title()]
    assert [re.sub(r" — .*", "", axes.get_title()) for axes in top] == ["CE", "FLSD-53"]
    assert figure.get_suptitle() == "cifar10 · resnet50"
    assert len({round(axes.get_position().y0, 6) for axes in top}) == 1  # one row
    assert top[0].get_ylim() == top[1].get_ylim() == (0, 1)
    assert bottom[0].get_ylim() == bottom[1].get_ylim()  # one histogram scale for both
    for axes, scale in zip(bottom, (2, 0.5), strict=True):
        probs = torch.softmax(scale * logits, dim=1).numpy()
        index = np.clip(np.ceil(probs.max(1) * 10).astype(int) - 1, 0, 9)
        count = np.bincount(index, minlength=10)
        assert [text.get_text() for text in axes.texts] == [str(c) for c in count if c]


def test_more_than_four_losses_wrap_three_to_a_row():
    generator = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(200, 5, generator=generator), torch.randint(5, (200,))
    names = [loss_label(n) for n in ("ce", "brier", "mmce", "ls-0.05", "fl-3", "flsd-53", "fl-2")]
    figure = reliability_by_loss_figure({name: (logits, labels) for name in names})
    figure.canvas.draw()
    shown = [axes for axes in figure.axes if axes.get_visible()]
    top = [axes for axes in shown if axes.get_title()]
    assert [re.sub(r" — .*", "", axes.get_title()) for axes in top] == names
    rows = sorted({round(axes.get_position().y0, 6) for axes in top}, reverse=True)
    assert len(rows) == 3 and len(shown) == 2 * len(names)  # 3 + 3 + 1: two places left empty
    assert [sum(round(a.get_position().y0, 6) == y for a in top) for y in rows] == [3, 3, 1]
