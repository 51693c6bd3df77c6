"""Passes over the IR and the pipeline that runs them."""

from .cse import cse
from .dce import dce
from .pipeline import PassRecord, PipelineResult, run_pipeline

DEFAULT_PIPELINE = [cse, dce]

__all__ = ["cse", "dce", "run_pipeline", "PassRecord", "PipelineResult", "DEFAULT_PIPELINE"]
