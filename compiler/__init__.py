"""The front end: @compile, tracing into the IR, flowjit.numpy and fj.nn."""

from .api import CacheInfo, CompiledFunction, compile
from .lowered import Compiled, Lowered
from .tensor import Tensor
from .variable import Variable

__all__ = ["CacheInfo", "Compiled", "CompiledFunction", "Lowered", "compile", "Tensor", "Variable"]
