"""flowjit's IR: typed values, ops declared once in ``ir/ops``, graphs, verifier, text form."""

from . import ops  # noqa: F401  (registers every op)
from .core import OPS, Effect, Graph, Location, Op, OpDef, Value
from .errors import (
    ArgumentError,
    CheckpointError,
    DonationError,
    DTypeError,
    FlowjitError,
    GradientError,
    HostCallError,
    IntegerOverflowError,
    LoweringError,
    NaNError,
    ParseError,
    PassError,
    ShapeError,
    ShardingError,
    BatchingError,
    TracingError,
    TypeMismatchError,
    VariableError,
    VerifyError,
)
from .parser import parse
from .printer import print_graph
from .types import DTYPE_NAMES, JaxModule, MeshAxes, TensorType, dtype_name
from .verify import verify

__all__ = [
    "ArgumentError",
    "CheckpointError",
    "OPS",
    "Effect",
    "Graph",
    "Location",
    "Op",
    "OpDef",
    "Value",
    "DTypeError",
    "FlowjitError",
    "GradientError",
    "HostCallError",
    "IntegerOverflowError",
    "LoweringError",
    "ParseError",
    "PassError",
    "ShapeError",
    "ShardingError",
    "NaNError",
    "DonationError",
    "VariableError",
    "BatchingError",
    "TracingError",
    "TypeMismatchError",
    "VerifyError",
    "parse",
    "print_graph",
    "DTYPE_NAMES",
    "JaxModule",
    "MeshAxes",
    "TensorType",
    "dtype_name",
    "verify",
]
