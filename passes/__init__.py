"""Passes over the IR and the pipeline that runs them."""

from .cse import cse
from .dce import dce
from .discharge import discharge_state
from .pipeline import PassRecord, PipelineResult, run_pipeline

# discharge_state comes last: everything before it sees variables as ordered effects
DEFAULT_PIPELINE = [cse, dce, discharge_state]

__all__ = [
    "cse",
    "dce",
    "discharge_state",
    "run_pipeline",
    "PassRecord",
    "PipelineResult",
    "DEFAULT_PIPELINE",
]
