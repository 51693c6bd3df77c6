"""The front end: @compile, tracing into the IR, flowjit.numpy and fj.nn."""

from .api import CacheInfo, Compiled, CompiledFunction, Lowered, compile
from .tensor import Tensor

__all__ = ["CacheInfo", "Compiled", "CompiledFunction", "Lowered", "compile", "Tensor"]
