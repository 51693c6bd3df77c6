"""flowjit: a JIT graph compiler. Trace a Python function into a stateful dataflow IR,
optimize it, and compile it with XLA.

    import flowjit as fj
    import flowjit.numpy as fnp

    @fj.compile
    def step(x, w):
        return fnp.tanh(x @ w).sum()
"""

from . import data, distributed, ir, nn, numpy, optim, passes, random  # noqa: F401
from .compiler import CacheInfo, Compiled, CompiledFunction, Lowered, Tensor, Variable, compile
from .compiler.autodiff import grad, gradients, stop_gradient, value_and_grad
from .compiler.control_flow import cond, fori_loop, scan, while_loop
from .compiler.custom import custom_jvp, custom_vjp
from .compiler.forward import hessian, jacfwd, jacrev, jvp, linearize, vjp
from .compiler.vmap import vmap
from .compiler.module import Module
from .compiler.from_jax import from_jax
from .compiler.host import ShapeDtype, host_call
from .compiler.remat import checkpoint, checkpoint_name, checkpoint_policies, remat
from .compiler.placement import device, devices
from .compiler.sharding import with_sharding
from .runtime.sharding import Mesh, NamedSharding, P
from .compiler.host import print_ as print  # noqa: A001  (fj.print, as API.md names it)
from .runtime import config
from .ir import (
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
from flowjit.runtime.checkpoint import restore, save
from .compiler.checkpointing import Checkpoint
from .compiler.profiling import profile

__version__ = "0.1.0"

__all__ = [
    "profile",
    "compile",
    "Module",
    "cond",
    "while_loop",
    "fori_loop",
    "scan",
    "checkpoint",
    "checkpoint_name",
    "checkpoint_policies",
    "remat",
    "host_call",
    "from_jax",
    "print",
    "ShapeDtype",
    "device",
    "devices",
    "Mesh",
    "NamedSharding",
    "P",
    "with_sharding",
    "ShardingError",
    "NaNError",
    "DonationError",
    "VariableError",
    "data",
    "distributed",
    "TypeMismatchError",
    "GradientError",
    "HostCallError",
    "IntegerOverflowError",
    "grad",
    "vmap",
    "gradients",
    "stop_gradient",
    "value_and_grad",
    "custom_vjp",
    "custom_jvp",
    "jvp",
    "jacfwd",
    "jacrev",
    "hessian",
    "linearize",
    "vjp",
    "config",
    "Tensor",
    "Variable",
    "CacheInfo",
    "Compiled",
    "CompiledFunction",
    "Lowered",
    "save",
    "restore",
    "Checkpoint",
    "ArgumentError",
    "CheckpointError",
    "FlowjitError",
    "DTypeError",
    "LoweringError",
    "ParseError",
    "PassError",
    "ShapeError",
    "BatchingError",
    "TracingError",
    "VerifyError",
    "ir",
    "nn",
    "numpy",
]
