"""Reports: reliability diagrams and training curves (matplotlib, optional:
``pip install 'focalcal[plots]'``) and paper-style tables (Markdown, LaTeX, JSON) with
per-loss comparisons."""

from focalcal.report.analysis import analysis_figure, mean_curve, reliability_by_loss_figure
from focalcal.report.cells import Cell
from focalcal.report.comparison import comparison_markdown
from focalcal.report.plots import (
    nll_curves_figure,
    plot_nll_curves,
    plot_reliability,
    reliability_figure,
    save_figure,
    save_reliability_diagram,
)
from focalcal.report.tables import (
    Table,
    build_tables,
    evaluation_markdown,
    json_tables,
    latex_tables,
    markdown_tables,
    result_row,
    table_latex,
    table_markdown,
    write_tables,
)

__all__ = [
    "Cell",
    "Table",
    "analysis_figure",
    "build_tables",
    "comparison_markdown",
    "evaluation_markdown",
    "json_tables",
    "latex_tables",
    "markdown_tables",
    "mean_curve",
    "nll_curves_figure",
    "plot_nll_curves",
    "plot_reliability",
    "reliability_by_loss_figure",
    "reliability_figure",
    "result_row",
    "save_figure",
    "save_reliability_diagram",
    "table_latex",
    "table_markdown",
    "write_tables",
]
