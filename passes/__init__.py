"""Passes over the IR and the pipeline that runs them."""

from .partition import partition
from .cse import cse
from .dce import dce
from .discharge import discharge_state, lift_state
from .fold import fold_constants
from .pipeline import (
    PassRecord,
    PipelineResult,
    default_pipeline,
    pass_name,
    resolve_passes,
    run_pipeline,
    with_required,
)
from .simplify import simplify
from .subgraphs import count_ops

__all__ = [
    "cse",
    "partition",
    "dce",
    "discharge_state",
    "lift_state",
    "fold_constants",
    "simplify",
    "count_ops",
    "run_pipeline",
    "default_pipeline",
    "pass_name",
    "resolve_passes",
    "with_required",
    "PassRecord",
    "PipelineResult",
]
