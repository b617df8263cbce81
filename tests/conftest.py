"""Hypothesis draws the same examples on every run and every machine (``derandomize``), so a
red CI run is reproduced by running the same test anywhere; ``HYPOTHESIS_PROFILE=explore``
draws new random examples on every run, to search for failures."""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
