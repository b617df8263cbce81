"""The note under each comparison table says what the table holds and nothing more: bootstrap
intervals only where a cell shows one, seeds only where rows were averaged."""

import pytest

from focalcal.report import comparison_markdown, markdown_tables


def row(loss, seed=None, ece=0.05, interval=None):
    values = {"dataset": "d", "model": "m", "loss": loss, "error": 0.1, "ece_before": ece}
    if seed is not None:
        values["seed"] = seed
    if interval is not None:
        values["intervals"] = {"ece_before": interval}
    return values


def note(text):
    """The note of the only table: the paragraph after its grid."""
    return text.split("Lower is better")[1]


def test_single_runs_without_intervals_promise_none():
    rows = [row("ce"), row("flsd-53", ece=0.02)]
    text = note(comparison_markdown(rows))
    assert "interval" not in text and "bootstrap" not in text and "[" not in text
    assert "seeds" not in text and "Bold" not in text
    assert "nothing is marked" in text
    assert "interval" not in markdown_tables(rows).lower()  # nor anywhere on the page


def test_single_runs_with_intervals_explain_them():
    rows = [row("ce", interval=(0.04, 0.06)), row("flsd-53", ece=0.02)]
    table = comparison_markdown(rows)
    assert "5.00 [4.00, 6.00]" in table  # a cell shows one
    text = note(table)
    assert "[low, high]: 95 % bootstrap interval" in text
    assert "seeds" not in text and "Bold" not in text


def test_averaged_rows_name_the_seeds_and_the_rule_of_the_marks_only():
    rows = [row(loss, seed, ece + seed / 100) for loss, ece in (("ce", 0.05), ("fl-3", 0.02))
            for seed in (0, 1)]  # fmt: skip
    text = note(comparison_markdown(rows))
    assert "Mean ± standard deviation over 2 seeds." in text and "**Bold**" in text
    assert "interval" not in text and "nothing is marked" not in text.lower()


@pytest.mark.parametrize("interval", [None, (0.01, 0.03)])
def test_mixed_repeats_mark_nothing_and_mention_intervals_only_when_shown(interval):
    rows = [row("ce", 0), row("ce", 1, 0.06), row("fl-3", 0, 0.02, interval)]
    text = note(comparison_markdown(rows))
    assert "over 1/2 seeds" in text and "Nothing is marked." in text and "Bold" not in text
    assert ("bootstrap interval" in text) == (interval is not None)
