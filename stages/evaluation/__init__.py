"""One evaluator for every stage."""

from stages.evaluation.loop import *  # noqa: F401,F403
