"""The job layer: read inputs, call the stages, write outputs. The CLI is a thin shell over it.

Training lives in `training.job` and scoring in `serving.job`; the names here keep older
imports working.
"""

from __future__ import annotations

from expansion_scorer.training.job import (
    TRUTH_FILE,
    PromoteResult,
    TrainResult,
    load_world,
    promote_job,
    train_job,
    training_frame,
)

__all__ = [
    "TRUTH_FILE",
    "PromoteResult",
    "TrainResult",
    "load_world",
    "promote_job",
    "train_job",
    "training_frame",
]
