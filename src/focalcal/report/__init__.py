"""Reports: reliability diagrams (matplotlib, optional: ``pip install 'focalcal[plots]'``)."""

from focalcal.report.plots import plot_reliability, reliability_figure, save_reliability_diagram

__all__ = ["plot_reliability", "reliability_figure", "save_reliability_diagram"]
