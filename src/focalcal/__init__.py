"""focalcal: train classifiers that are accurate and calibrated."""

__version__ = "0.1.0"
