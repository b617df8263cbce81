"""Experiments: the paper's comparison, from a grid of configs to its tables and figures.

>>> from focalcal.experiments import DEFAULT_LOSSES, grid
>>> from focalcal.engine.config import TrainConfig
>>> len(grid(TrainConfig(), DEFAULT_LOSSES))
6
"""

from focalcal.engine.train import read_history
from focalcal.experiments.figures import figures_page
from focalcal.experiments.reproduce import DEFAULT_LOSSES, Grid, grid, reproduce

__all__ = ["DEFAULT_LOSSES", "Grid", "figures_page", "grid", "read_history", "reproduce"]
