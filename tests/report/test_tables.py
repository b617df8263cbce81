"""Paper-style tables: cell formatting and rounding, layout, LaTeX escaping, JSON content."""

import json
import math

import pytest

from focalcal.report import (
    Cell,
    build_tables,
    evaluation_markdown,
    json_tables,
    latex_tables,
    markdown_tables,
    result_row,
    write_tables,
)
from focalcal.report.cells import format_cell, format_percent, format_temperature
from focalcal.report.tables import latex_escape


def row(dataset, model, loss, ece=(0.0435, 0.0135), t=2.5, error=0.0495, ood=None, **extra):
    values = {
        "run": f"{dataset}/{model}/{loss}",
        "dataset": dataset,
        "model": model,
        "loss": loss,
        "temperature": t,
        "error": error,
        "ece_before": ece[0],
        "ece_after": ece[1],
        "adaece_before": 0.05,
        "adaece_after": 0.02,
        "classwise_ece_before": 0.004,
        "classwise_ece_after": 0.003,
        "nll_before": 0.41,
        "nll_after": 0.2,
        "ood": ood or {},
    }
    return values | extra


ROWS = [
    row("cifar10", "resnet50", "ce", ood={"svhn": {"entropy": {"before": 0.9513, "after": 0.96}}}),
    row("cifar10", "resnet50", "flsd-53", ece=(0.0155, 0.0095), t=1.1, error=0.0498),
    row("cifar_10&x", "net%1", "ls-0.05", ece=(0.012345, 0.987654), t=1.2345),
]


def test_formatting_and_rounding():
    assert [format_percent(v) for v in (0.012345, 0.987654, 0.0, 1.0)] == [
        "1.23",
        "98.77",
        "0.00",
        "100.00",
    ]
    assert format_percent(None) == format_percent(math.nan) == "–"
    assert [format_temperature(t) for t in (2.5, 1.0, 0.1, 1.2345, 10.0)] == [
        "2.5",
        "1.0",
        "0.1",
        "1.23",
        "10.0",
    ]
    assert format_cell(Cell(0.0435, 0.0135, 2.5)) == "4.35 → 1.35 (2.5)"
    assert format_cell(Cell(0.0495)) == "4.95"
    assert format_cell(None) == "–"


def test_tables_follow_the_paper_layout():
    tables = {table.key: table for table in build_tables(ROWS)}
    assert list(tables) == ["ece", "adaece", "classwise_ece", "error", "nll", "ood-svhn"]
    ece = tables["ece"]
    assert ece.settings == (("cifar10", "resnet50"), ("cifar_10&x", "net%1"))
    assert ece.losses == ("ce", "flsd-53", "ls-0.05")
    assert ece.cells[("cifar10", "resnet50", "flsd-53")] == Cell(0.0155, 0.0095, 1.1)
    assert ("cifar10", "resnet50", "ls-0.05") not in ece.cells
    assert ece.scaled and not tables["error"].scaled
    assert tables["ood-svhn"].cells == {("cifar10", "resnet50", "ce"): Cell(0.9513, 0.96, 2.5)}


def test_markdown():
    text = markdown_tables(ROWS)
    assert "### ECE (%), before → after temperature scaling (T)" in text
    assert "| Dataset | Model | CE | FLSD-53 | LS-0.05 |" in text
    assert "| cifar10 | resnet50 | 4.35 → 1.35 (2.5) | 1.55 → 0.95 (1.1) | – |" in text
    assert "| cifar_10&x | net%1 | – | – | 1.23 → 98.77 (1.23) |" in text
    assert "### Test error (%)\n" in text
    assert "| cifar10 | resnet50 | 4.95 | 4.98 | – |" in text
    assert "| cifar10 | resnet50 | 41.00 → 20.00 (2.5) |" in text  # NLL × 100
    assert "### OOD AUROC (%), svhn, entropy, before → after" in text
    assert "| cifar10 | resnet50 | 95.13 → 96.00 (2.5) |" in text


def test_latex_booktabs_and_escaping():
    text = latex_tables(ROWS)
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == 6
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == 6
    assert r"\caption{ECE (\%) before (Pre T) and after (Post T) temperature scaling" in text
    assert r"\caption{NLL ($\times$100)" in text
    assert (
        r"& & \multicolumn{2}{c}{CE} & \multicolumn{2}{c}{FLSD-53} & \multicolumn{2}{c}{LS-0.05} \\"
        in text
    )
    assert r"\cmidrule(lr){3-4} \cmidrule(lr){5-6} \cmidrule(lr){7-8}" in text
    assert r"Dataset & Model & Pre T & Post T & Pre T & Post T & Pre T & Post T \\" in text
    assert r"cifar10 & resnet50 & 4.35 & 1.35 (2.5) & 1.55 & 0.95 (1.1) & -- & -- \\" in text
    assert r"cifar\_10\&x & net\%1 & -- & -- & -- & -- & 1.23 & 98.77 (1.23) \\" in text
    assert r"\begin{tabular}{llccc}" in text  # the error table: one column per loss
    assert r"\label{tab:ood-svhn}" in text
    assert latex_escape(r"a\b&c%d$e#f_g{h}i~j^k") == (
        r"a\textbackslash{}b\&c\%d\$e\#f\_g\{h\}i\textasciitilde{}j\textasciicircum{}k"
    )


def test_json_keeps_unrounded_fractions():
    document = json.loads(json_tables(ROWS))
    assert document["unit"] == "fraction" and document["rows"] == ROWS
    ece = next(table for table in document["tables"] if table["key"] == "ece")
    cell = next(c for c in ece["cells"] if c["loss"] == "ls-0.05")
    assert cell == {
        "dataset": "cifar_10&x",
        "model": "net%1",
        "loss": "ls-0.05",
        "before": 0.012345,
        "after": 0.987654,
        "temperature": 1.2345,
        "before_std": None,
        "after_std": None,
        "runs": 1,
    }


def test_write_tables_writes_the_three_texts(tmp_path):
    paths = write_tables(ROWS, tmp_path / "out")
    assert {k: p.name for k, p in paths.items()} == {
        "md": "tables.md",
        "tex": "tables.tex",
        "json": "tables.json",
    }
    assert paths["md"].read_text() == markdown_tables(ROWS)
    assert paths["tex"].read_text() == latex_tables(ROWS)
    assert paths["json"].read_text() == json_tables(ROWS)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "tables.json",
        "tables.md",
        "tables.tex",
    ]


def test_bad_rows_are_named(tmp_path):
    with pytest.raises(ValueError, match="'a' and 'b' are both cifar10/resnet50/ce"):
        build_tables(
            [row("cifar10", "resnet50", "ce", run="a"), row("cifar10", "resnet50", "ce", run="b")]
        )
    with pytest.raises(ValueError, match=r"row 0 \(x\) lacks \['loss'\]"):
        write_tables([{"run": "x", "dataset": "d", "model": "m"}], tmp_path)
    assert not list(tmp_path.iterdir())


def evaluation(intervals=None):
    report = {
        "num_samples": 10,
        "error": 0.1,
        "nll": 0.3,
        "ece": 0.05,
        "adaece": 0.04,
        "classwise_ece": 0.01,
        "mce": 0.2,
        "brier": 0.15,
        "intervals": intervals or {},
    }
    return {
        "run": "/runs/x",
        "dataset": "digits",
        "model": "small-cnn",
        "loss": "fl-3",
        "checkpoint": "best",
        "epoch": 7,
        "objective": "ece",
        "temperature": 1.1,
        "val_samples": 5,
        "test": {"before": report, "after": {**report, "ece": 0.01}},
        "ood": {
            "svhn": {
                "num_samples": 3,
                "entropy": {"before": 0.8, "after": 0.85},
                "confidence": {"before": 0.7, "after": 0.75},
            }
        },
    }


def test_result_row_reads_an_evaluation():
    values = result_row(evaluation(), run="digits/small-cnn/fl-3")
    assert values["run"] == "digits/small-cnn/fl-3"
    assert (values["ece_before"], values["ece_after"], values["temperature"]) == (0.05, 0.01, 1.1)
    assert values["ood"] == {
        "svhn": {
            "entropy": {"before": 0.8, "after": 0.85},
            "confidence": {"before": 0.7, "after": 0.75},
        }
    }
    assert result_row(evaluation())["run"] == "/runs/x"


def test_evaluation_markdown():
    text = evaluation_markdown(evaluation({"ece": (0.04, 0.06)}))
    assert "Checkpoint `best` (epoch 7); T = 1.1" in text
    assert "| ECE (%) | 5.00 [4.00, 6.00] | 1.00 [4.00, 6.00] |" in text
    assert "| OOD AUROC (%), svhn, max confidence | 70.00 | 75.00 |" in text
    assert "FPR" not in text  # an evaluation written before the FPR at 95 % TPR


def test_fpr_at_95_tpr_reaches_the_tables_beside_the_auroc():
    document = evaluation()
    document["ood"]["svhn"]["fpr95"] = {
        "entropy": {"before": 0.4, "after": 0.35},
        "confidence": {"before": 0.45, "after": 0.3},
    }
    text = evaluation_markdown(document)
    assert "| OOD FPR at 95 % TPR (%), svhn, entropy | 40.00 | 35.00 |" in text
    assert "| OOD FPR at 95 % TPR (%), svhn, max confidence | 45.00 | 30.00 |" in text
    rows = [result_row(document, run="r")]
    tables = {table.key: table for table in build_tables(rows)}
    cell = ("digits", "small-cnn", "fl-3")
    assert tables["ood-svhn"].cells[cell] == Cell(0.8, 0.85, 1.1)
    assert tables["ood-svhn-confidence"].cells[cell] == Cell(0.7, 0.75, 1.1)
    assert tables["fpr95-svhn"].cells[cell] == Cell(0.4, 0.35, 1.1)
    assert tables["fpr95-svhn-confidence"].cells[cell] == Cell(0.45, 0.3, 1.1)
    assert "### OOD FPR at 95 % TPR (%), svhn, max confidence, before → after" in (
        markdown_tables(rows)
    )
    assert r"\label{tab:fpr95-svhn-confidence}" in latex_tables(rows)
    assert "fpr95-svhn" in [table["key"] for table in json.loads(json_tables(rows))["tables"]]


def test_post_hoc_maps_reach_the_rows_and_their_own_comparison():
    document = evaluation()
    vector = {**document["test"]["before"], "ece": 0.021, "nll": 0.25}
    matrix = {**vector, "ece": 0.017, "off_diagonal_penalty": 9.0, "bias_penalty": 1.0}
    document["post_hoc"] = {"vector": vector, "matrix": matrix}
    values = result_row(document, run="r")
    assert (values["ece_vector"], values["ece_matrix"], values["nll_vector"]) == (
        0.021,
        0.017,
        0.25,
    )
    page = markdown_tables([values])
    section = page.split("## What post-hoc maps leave")[1]
    ece, nll = section.split("| Loss | NLL (×100) | NLL (T) (×100) |")  # two tables
    assert "| Loss | ECE (%) | ECE (T) (%) | ECE (vector) (%) | ECE (matrix) (%) |" in ece
    assert "| FL-3 | 5.00 | 1.00 | 2.10 | 1.70 |" in ece
    assert nll.startswith(" NLL (vector) (×100) | NLL (matrix) (×100) |")
    assert "| FL-3 | 30.00 | 30.00 | 25.00 | 25.00 |" in nll
    assert "## What post-hoc maps leave" not in markdown_tables([result_row(evaluation())])
    page = evaluation_markdown(document)
    assert "## Post-hoc calibration maps" in page and "Matrix, ODIR λ = 9, μ = 1" in page
    assert "| ECE (%) | 5.00 | 1.00 | 2.10 | 1.70 |" in page
    document["post_hoc"]["isotonic"] = {**vector, "ece": 0.012, "parameters": {"bins": 7}}
    page = evaluation_markdown(document)
    assert "| ECE (%) | 5.00 | 1.00 | 2.10 | 1.70 | 1.20 |" in page
    assert "| Isotonic |" in page and "Fitted: isotonic: bins = 7." in page
