"""Errors of the training runtime."""

from __future__ import annotations


class InvalidInput(Exception):
    """The job's input is wrong (dataset, target, estimator, hyperparameters): exit code 2, no retry helps.

    The message is one line a person can act on; the job writes it to stderr and to the run's
    failure tag.
    """
