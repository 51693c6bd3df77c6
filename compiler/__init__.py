"""The front end: @compile, tracing into the IR, flowjit.numpy and fj.nn."""

from .api import CacheInfo, Compiled, CompiledFunction, Lowered, compile
from .tensor import Tensor
from .variable import Variable

__all__ = ["CacheInfo", "Compiled", "CompiledFunction", "Lowered", "compile", "Tensor", "Variable"]
