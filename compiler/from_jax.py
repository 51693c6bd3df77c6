"""``fj.from_jax(fn)`` (API.md, section 11): any jax-traceable function, called on Tensors and
Variables inside a compiled function.

jax traces ``fn`` at the Tensors' shapes and dtypes (``jax.make_jaxpr``), and the jaxpr is
brought into flowjit's IR equation by equation: a primitive with a flowjit op becomes that op
(``_NATIVE``: the IR stays readable and flowjit's passes see it), a nested ``jit`` is brought
in inline, and each run of other equations becomes one ``jax_call`` op holding that part of
the jaxpr, exported by jax.export (ir/ops/jax_call.py), which XLA compiles with the rest and
jax differentiates. Every op made carries the user's line of the call; a ``jax_call`` is named
after ``fn`` and the primitives it holds.

Only Tensors and Variables (read where the call is) are traced; any other argument (a Python
number, a numpy array, a flag) is passed to ``fn`` as it is, as a constant of the trace.
Outside a compiled function, ``from_jax(fn)`` is ``fn`` (Variables passed as their values)."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jax_export
from flowjit.ir import JaxModule, TensorType
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import jax_call as J
from flowjit.ir.ops import linalg as L
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops import shape as S

from .trace import constant, emit, tracing

# The platforms an imported computation is exported for: a graph that holds one prints,
# parses and runs on any of them.
PLATFORMS = ("cpu", "cuda", "tpu")


def from_jax(fn: Callable, *, name: str | None = None) -> Callable:
    """``fn``, callable on Tensors (and pytrees of Tensors and Variables) inside a compiled
    function; ``name`` (default: ``fn``'s) names it in the IR."""
    label = name or getattr(fn, "__qualname__", None) or type(fn).__name__

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        from .tensor import Tensor
        from .variable import Variable

        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        leaves = [leaf.read() if isinstance(leaf, Variable) else leaf for leaf in leaves]
        if not tracing():
            return fn(*jax.tree_util.tree_unflatten(tree, leaves)[0], **kwargs)
        traced = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor)]

        def flat(*values: Any) -> Any:
            given = list(leaves)
            for i, value in zip(traced, values):
                given[i] = value
            a, k = jax.tree_util.tree_unflatten(tree, given)
            return fn(*a, **k)

        inputs = [leaves[i] for i in traced]
        specs = [jax.ShapeDtypeStruct(t.shape, t.dtype) for t in inputs]
        closed, shapes = jax.make_jaxpr(flat, return_shape=True)(*specs)
        outs = _Importer(label).run(closed, inputs)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), outs)

    return call


class JaxNamespace:
    """A jax namespace seen through the bridge (``fnp.linalg``, ``fnp.fft``): each function is
    ``from_jax`` of jax's; constants, dtypes and classes are jax's own."""

    def __init__(self, module: Any, prefix: str):
        self._module, self._prefix = module, prefix

    def __getattr__(self, name: str) -> Any:
        return bridged(self._module, self._prefix, name, vars(self))

    def __dir__(self) -> list[str]:
        return dir(self._module)


def bridged(module: Any, prefix: str, name: str, cache: dict) -> Any:
    """``module``'s ``name`` through the bridge (what a flowjit namespace does not define
    itself), kept in ``cache``: a function as ``from_jax`` of it, a namespace as a
    JaxNamespace, anything else (a constant, a dtype, a class) as it is."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        found = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"{prefix} has no attribute {name!r}, nor has jax") from None
    if inspect.ismodule(found):
        found = JaxNamespace(found, f"{prefix}.{name}")
    elif callable(found) and not isinstance(found, type):
        found = from_jax(found, name=f"{prefix}.{name}")
    cache[name] = found
    return found


class _Importer:
    """Brings one jaxpr into the trace being built."""

    def __init__(self, label: str):
        self.label = label

    def run(self, closed: Any, inputs: Sequence[Any]) -> list:
        env: dict[Any, Any] = {}
        for var, value in zip(closed.jaxpr.constvars, closed.consts):
            env[var] = _constant(np.asarray(value))
        env.update(zip(closed.jaxpr.invars, inputs))
        return self.jaxpr(closed.jaxpr, env)

    def jaxpr(self, jaxpr: Any, env: dict) -> list:
        """The values of ``jaxpr``'s outputs, its inputs' values in ``env``."""
        pending: list = []  # equations to hold in one jax_call, in order
        for eqn in jaxpr.eqns:
            native = _NATIVE.get(eqn.primitive.name)
            body = _inlined_body(eqn)
            if native is None and body is None:
                pending.append(eqn)
                continue
            self.flush(pending, env)
            pending = []
            args = [self.read(v, env) for v in eqn.invars]
            if body is not None:
                inner = dict(zip(body.jaxpr.constvars, map(_constant, body.consts)))
                inner.update(zip(body.jaxpr.invars, args))
                outs = self.jaxpr(body.jaxpr, inner)
            else:
                outs = native(eqn, *args)
                outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
            env.update(zip(eqn.outvars, outs))
        self.flush(pending, env)
        return [self.read(v, env) for v in jaxpr.outvars]

    def read(self, var: Any, env: dict) -> Any:
        if isinstance(var, jax.extend.core.Literal):
            return _constant(np.asarray(var.val, var.aval.dtype))
        return env[var]

    def flush(self, eqns: list, env: dict) -> None:
        """One ``jax_call`` computing ``eqns`` (their results into ``env``)."""
        if not eqns:
            return
        defined = {v for eqn in eqns for v in eqn.outvars}
        used = [v for eqn in eqns for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)]
        inputs = list(dict.fromkeys(v for v in used if v not in defined))
        outputs = [v for eqn in eqns for v in eqn.outvars if type(v).__name__ != "DropVar"]

        def computation(*values: Any) -> list:
            return _evaluate(eqns, dict(zip(inputs, values)), outputs)

        specs = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in inputs]
        exported = jax_export.export(jax.jit(computation), platforms=PLATFORMS)(*specs)
        module = JaxModule(
            lambda: exported.serialize(vjp_order=JaxModule.MAX_DERIVATIVE), loaded=exported
        )
        primitives = list(dict.fromkeys(eqn.primitive.name for eqn in eqns))
        held = ", ".join(primitives[:3]) + (", ..." if len(primitives) > 3 else "")
        results = emit(
            J.jax_call,
            [env[v] for v in inputs],
            name=f"{self.label}: {held}",
            derivative=0,
            result_types=tuple(TensorType(v.aval.shape, v.aval.dtype) for v in outputs),
            module=module,
        )
        env.update(zip(outputs, results if isinstance(results, tuple) else (results,)))


def _evaluate(eqns: list, env: dict, outputs: list) -> list:
    """jax's evaluation of ``eqns`` (as jax.core.eval_jaxpr does), the values of ``outputs``."""
    def read(v: Any) -> Any:
        return v.val if isinstance(v, jax.extend.core.Literal) else env[v]

    for eqn in eqns:
        params = eqn.primitive.get_bind_params(eqn.params)
        outs = eqn.primitive.bind(*map(read, eqn.invars), **params)
        env.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))
    return [env[v] for v in outputs]


def _inlined_body(eqn: Any) -> Any:
    """The body of a nested ``jit`` (brought in inline), else None."""
    if eqn.primitive.name in ("jit", "pjit", "closed_call", "core_call"):
        body = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
        if body is not None and hasattr(body, "consts"):
            return body
    return None


def _is_float(x: Any) -> bool:
    return np.issubdtype(x.dtype, np.floating) or x.dtype == np.dtype("bfloat16")


def _constant(array: np.ndarray) -> Any:
    return constant(array, array.dtype)


# -- primitives with a flowjit op ------------------------------------------------------------
# Each takes the equation and its operands' Tensors, and gives its results; an equation whose
# params the flowjit op does not cover is held whole instead (``_held``).


def _unary(opdef):
    return lambda eqn, x: emit(opdef, [x])


def _binary(opdef):
    return lambda eqn, x, y: emit(opdef, [x, y])


def _broadcast_in_dim(eqn, x):
    shape, dims = tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
    ranked = [1] * len(shape)
    for i, d in enumerate(dims):
        ranked[d] = x.shape[i]
    if tuple(ranked) != tuple(x.shape):
        x = emit(S.reshape, [x], shape=tuple(ranked))
    return x if tuple(x.shape) == shape else emit(S.broadcast_to, [x], shape=shape)


def _reshape(eqn, x):
    return emit(S.reshape, [x], shape=tuple(eqn.outvars[0].aval.shape))


def _reduce(opdef):
    return lambda eqn, x: emit(opdef, [x], axes=tuple(eqn.params["axes"]), keepdims=False)


def _dot_general(eqn, x, y):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    out = eqn.outvars[0].aval.dtype
    if out != x.dtype or out != y.dtype:  # (preferred_element_type: held by jax_call instead)
        return _held(eqn, x, y)
    return emit(
        L.dot_general,
        [x, y],
        lhs_contracting=tuple(lc),
        rhs_contracting=tuple(rc),
        lhs_batch=tuple(lb),
        rhs_batch=tuple(rb),
    )


def _select_n(eqn, pred, *cases):
    if len(cases) != 2 or pred.dtype != np.bool_:
        return _held(eqn, pred, *cases)
    return emit(E.select, [pred, cases[1], cases[0]])


def _integer_pow(eqn, x):
    """x ** y by squaring, multiplied in the order jax's own lowering multiplies."""
    y = eqn.params["y"]
    if y == 0:
        return _constant(np.ones(x.shape, x.dtype))
    acc, base, n = None, x, abs(y)
    while n:
        if n & 1:
            acc = base if acc is None else emit(E.mul, [acc, base])
        n >>= 1
        if n:
            base = emit(E.mul, [base, base])
    if y < 0:
        acc = emit(E.div, [_constant(np.ones((), x.dtype)), acc])
    return acc


def _held(eqn, *args):
    """The equation alone, as one jax_call (params this translation does not cover)."""
    importer = _Importer(eqn.primitive.name)
    env = {}
    inputs = [v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)]
    values = [a for v, a in zip(eqn.invars, args) if not isinstance(v, jax.extend.core.Literal)]
    env.update(zip(inputs, values))
    importer.flush([eqn], env)
    outs = [env[v] for v in eqn.outvars]
    return outs if eqn.primitive.multiple_results else outs[0]


_NATIVE: dict[str, Callable] = {
    **{
        name: _unary(opdef)
        for name, opdef in {
            "neg": E.neg,
            "exp": E.exp,
            "log": E.log,
            "tanh": E.tanh,
            "sin": E.sin,
            "cos": E.cos,
            "tan": E.tan,
            "sqrt": E.sqrt,
            "rsqrt": E.rsqrt,
            "abs": E.abs_,
            "logistic": E.logistic,
            "log1p": E.log1p,
            "expm1": E.expm1,
            "floor": E.floor,
            "ceil": E.ceil,
            "sign": E.sign,
            "erf": E.erf,
            "is_finite": E.isfinite,
        }.items()
    },
    **{
        name: _binary(opdef)
        for name, opdef in {
            "add": E.add,
            "sub": E.sub,
            "mul": E.mul,
            "max": E.max_,
            "min": E.min_,
            "atan2": E.atan2,
            "eq": E.eq,
            "ne": E.ne,
            "lt": E.lt,
            "le": E.le,
            "gt": E.gt,
            "ge": E.ge,
        }.items()
    },
    "div": lambda eqn, x, y: emit(E.div, [x, y]) if _is_float(x) else _held(eqn, x, y),
    "square": lambda eqn, x: emit(E.mul, [x, x]),
    "integer_pow": _integer_pow,
    "convert_element_type": lambda eqn, x: emit(
        E.convert, [x], dtype=eqn.outvars[0].aval.dtype
    )
    if x.dtype != eqn.outvars[0].aval.dtype
    else x,
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": _reshape,
    "expand_dims": _reshape,
    "transpose": lambda eqn, x: emit(S.transpose, [x], perm=tuple(eqn.params["permutation"])),
    "dot_general": _dot_general,
    "reduce_sum": _reduce(R.reduce_sum),
    "reduce_max": _reduce(R.reduce_max),
    "reduce_min": _reduce(R.reduce_min),
    "reduce_prod": _reduce(R.reduce_prod),
    "select_n": _select_n,
    "iota": lambda eqn: emit(
        Cr.iota,
        [],
        shape=tuple(eqn.params["shape"]),
        dimension=eqn.params["dimension"],
        dtype=eqn.params["dtype"],
    ),
    "concatenate": lambda eqn, *xs: emit(S.concatenate, list(xs), axis=eqn.params["dimension"]),
    "copy": lambda eqn, x: x,
    "copy_p": lambda eqn, x: x,
}

__all__ = ["from_jax"]
