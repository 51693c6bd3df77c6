"""``fj.from_jax(fn)`` (API.md, section 11): any jax-traceable function, called on Tensors and
Variables inside a compiled function.

jax traces ``fn`` at the Tensors' shapes and dtypes (``jax.make_jaxpr``), and the jaxpr is
brought into flowjit's IR equation by equation: a primitive with a flowjit op becomes that op
(``_NATIVE``: the IR stays readable and flowjit's passes see it), a nested ``jit`` is brought
in inline, and each run of other equations becomes one ``jax_call`` op holding that part of
the jaxpr (ir/ops/jax_call.py), which XLA compiles with the rest and jax differentiates
(exported by jax.export only when the graph is printed or saved: ``HeldComputation``). Every
op made carries the user's line of the call; a ``jax_call`` is named after ``fn`` and the
primitives it holds.

Only Tensors and Variables (read where the call is) are traced; any other argument (a Python
number, a numpy array, a flag) is passed to ``fn`` as it is, as a constant of the trace.
Outside a compiled function, ``from_jax(fn)`` is ``fn`` (Variables passed as their values)."""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import eager_constant_folding, jax, jax_export, user_frames
from flowjit.ir import FlowjitError, JaxModule, Location, TensorType, TracingError
from flowjit.ir.ops import bits as B
from flowjit.ir.ops import creation as Cr
from flowjit.ir.ops import elementwise as E
from flowjit.ir.ops import index as X
from flowjit.ir.ops import jax_call as J
from flowjit.ir.ops import linalg as L
from flowjit.ir.ops import nn as N
from flowjit.ir.ops import reduce as R
from flowjit.ir.ops import shape as S
from flowjit.ir.ops import sort as O

from . import control_flow as CF
from .location import user_location
from .trace import constant, emit, imported_from, tracing

# The platforms an imported computation is exported for: a graph that holds one prints,
# parses and runs on any of them (one that some platform cannot compile, jnp.linalg.eig on TPU,
# is exported for the platform at hand only).
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
            a, k = jax.tree_util.tree_unflatten(tree, leaves)
            return fn(*a, **k)
        traced = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor)]

        def flat(*values: Any) -> Any:
            given = list(leaves)
            for i, value in zip(traced, values):
                given[i] = value
            a, k = jax.tree_util.tree_unflatten(tree, given)
            return fn(*a, **k)

        inputs = [leaves[i] for i in traced]
        specs = [jax.ShapeDtypeStruct(t.shape, t.dtype) for t in inputs]
        # (staged as under jax.jit: the compiled function's own jax code runs eagerly, with
        # ensure_compile_time_eval, but here that would compile each constant op on its own)
        try:
            with eager_constant_folding(False):
                closed, shapes = jax.make_jaxpr(flat, return_shape=True)(*specs)
        except FlowjitError:
            raise
        except Exception as err:  # (jax's error tracing it: said at the user's line)
            raise TracingError(
                f"jax could not trace {label} on {[str(t.shape) for t in inputs]} inputs: "
                f"{type(err).__name__}: {err}",
                loc=user_location(),
            ) from err
        outs = _Importer(label).run(closed, inputs)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), outs)

    return call


class JaxNamespace:
    """A jax namespace seen through the bridge (``fnp.linalg``, ``fnp.fft``): each function is
    ``from_jax`` of jax's; constants, dtypes and classes are jax's own.

    With ``factories`` (``fj.nn.initializers``), a function called on no Tensor is jax's own
    (``normal(0.02)`` makes an initializer), and a function it returns is ``from_jax`` of it
    (the initializer, called on a key from ``g.key()`` and a shape)."""

    def __init__(self, module: Any, prefix: str, factories: bool = False):
        self._module, self._prefix, self._factories = module, prefix, factories

    def __getattr__(self, name: str) -> Any:
        found = bridged(self._module, self._prefix, name, vars(self))
        if self._factories and callable(found) and not isinstance(found, type):
            found = vars(self)[name] = _factory(found)
        return found

    def __dir__(self) -> list[str]:
        return dir(self._module)


def _factory(bridged_fn: Callable) -> Callable:
    """``bridged_fn`` (from_jax of a jax function) as a factory: called on Tensors it is
    itself; called on anything else, jax's function, whose function result is bridged."""
    jax_fn = bridged_fn.__wrapped__

    @functools.wraps(jax_fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        from .tensor import Tensor
        from .variable import Variable

        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(leaf, (Tensor, Variable)) for leaf in leaves):
            return bridged_fn(*args, **kwargs)
        made = jax_fn(*args, **kwargs)
        if callable(made):
            return from_jax(made, name=f"{bridged_fn.__name__}(...)")
        return made

    return call


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


def with_jax_signatures(namespace: dict, module: Any, prefix: str) -> None:
    """Give each function of ``namespace`` (a flowjit module's globals) that ``module`` (jax's
    namespace) also has jax's whole signature: a call its own signature does not take
    (``fnp.clip(x, min=0)``, ``fnp.sum(x, where=mask)``) is jax's function's, through the
    bridge."""
    for name, native in list(namespace.items()):
        jax_fn = getattr(module, name, None)
        if name.startswith("_") or not inspect.isfunction(native) or not callable(jax_fn):
            continue
        try:
            signature = inspect.signature(native)
        except (TypeError, ValueError):  # (no signature to check calls against)
            continue
        namespace[name] = _either(native, signature, from_jax(jax_fn, name=f"{prefix}.{name}"))


def _either(native: Callable, signature: inspect.Signature, bridged_fn: Callable) -> Callable:
    @functools.wraps(native)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            return bridged_fn(*args, **kwargs)
        return native(*args, **kwargs)

    return call


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

    def jaxpr(self, jaxpr: Any, env: dict, outer: Location | None = None) -> list:
        """The values of ``jaxpr``'s outputs, its inputs' values in ``env``; ``outer`` is the
        line of jax code an equation came from when its own record has none (the call of a
        nested jit)."""
        pending: list = []  # equations to hold in one jax_call, in order
        # later[i]: the variables equations i, i+1, ... and the outputs use
        later = [{v for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal)}]
        for eqn in reversed(jaxpr.eqns):
            used = (v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal))
            later.insert(0, later[0] | set(used))
        for i, eqn in enumerate(jaxpr.eqns):
            native = _NATIVE.get(eqn.primitive.name)
            body = _inlined_body(eqn)
            # (a value of a jax-only type, a PRNG key, never leaves a jax_call: an equation
            # using one is held, and so is any equation while one held is still needed)
            keeps_open = any(_jax_only(v) and v in later[i] for e in pending for v in e.outvars)
            if (native is None and body is None) or _jax_only_in(eqn) or keeps_open:
                pending.append(eqn)
                continue
            self.flush(pending, env, later[i], outer)
            pending = []
            kept = _added_to_zero(eqn)
            if kept is not None:  # (x + 0.0 is x under jax.jit: XLA's simplifier says so)
                env[eqn.outvars[0]] = self.read(kept, env)
                continue
            args = [self.read(v, env) for v in eqn.invars]
            if body is not None:
                inner = dict(zip(body.jaxpr.constvars, map(_constant, body.consts)))
                inner.update(zip(body.jaxpr.invars, args))
                outs = self.jaxpr(body.jaxpr, inner, _origin(eqn) or outer)
            else:
                with imported_from(_origin(eqn) or outer):
                    outs = native(eqn, *args)
                outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
            env.update(zip(eqn.outvars, outs))
        self.flush(pending, env, later[-1], outer)
        return [self.read(v, env) for v in jaxpr.outvars]

    def read(self, var: Any, env: dict) -> Any:
        if isinstance(var, jax.extend.core.Literal):
            return _constant(np.asarray(var.val, var.aval.dtype))
        return env[var]

    def flush(self, eqns: list, env: dict, needed: set, outer: Location | None = None) -> None:
        """One ``jax_call`` computing ``eqns``: their results in ``needed`` go into ``env``."""
        if not eqns:
            return
        defined = {v for eqn in eqns for v in eqn.outvars}
        used = [v for eqn in eqns for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)]
        inputs = list(dict.fromkeys(v for v in used if v not in defined))
        outputs = [v for eqn in eqns for v in eqn.outvars if v in needed]
        for v in outputs:
            if _jax_only(v):
                raise TracingError(
                    f"{self.label} gives a value of jax's type {v.aval.dtype}, which flowjit "
                    "cannot hold; return its data instead (jax.random.key_data(key))",
                    loc=user_location(),
                )

        def computation(*values: Any) -> list:
            return _evaluate(eqns, dict(zip(inputs, values)), outputs)

        computation = HeldComputation(
            computation,
            tuple(v.aval for v in inputs),
            tuple(v.aval for v in outputs),
        )
        module = JaxModule(computation.serialize, loaded=computation)
        primitives = list(dict.fromkeys(eqn.primitive.name for eqn in eqns))
        held = ", ".join(primitives[:3]) + (", ..." if len(primitives) > 3 else "")
        with imported_from(_origin(eqns[0]) or outer):
            results = emit(
                J.jax_call,
                [env[v] for v in inputs],
                name=f"{self.label}: {held}",
                derivative=0,
                result_types=tuple(TensorType(v.aval.shape, v.aval.dtype) for v in outputs),
                module=module,
            )
        env.update(zip(outputs, results if isinstance(results, tuple) else (results,)))


class HeldComputation:
    """What a ``jax_call`` made by the import holds until its bytes are asked for: the jax
    function itself, which the backends call and differentiate as they would the Exported the
    bytes load into (``call``, ``vjp``, ``in_avals``, ``out_avals``). So a trace exports
    nothing: jax.export runs only when the graph is printed or saved (``serialize``)."""

    def __init__(self, fun: Callable, in_avals: tuple, out_avals: tuple):
        self.fun, self.in_avals, self.out_avals = fun, in_avals, out_avals

    def call(self, *args: Any) -> list:
        return list(self.fun(*args))

    def vjp(self) -> "HeldComputation":
        """The VJP function, as jax.export's ``Exported.vjp`` gives it: operands and the
        results' cotangents in, the operands' cotangents out (float0 for integers)."""
        n = len(self.in_avals)

        def pullback(*args: Any) -> list:
            _, vjp = jax.vjp(self.call, *args[:n])
            return list(vjp(list(args[n:])))

        cotangent = [_cotangent_aval(a) for a in self.out_avals]
        return HeldComputation(
            pullback, (*self.in_avals, *cotangent), tuple(map(_cotangent_aval, self.in_avals))
        )

    def serialize(self) -> bytes:
        """jax.export's bytes, for every platform of PLATFORMS that can compile it (else the
        one at hand), with as many VJPs as jax gives, up to JaxModule.MAX_DERIVATIVE."""
        specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in self.in_avals]
        try:
            exported = jax_export.export(jax.jit(self.call), platforms=PLATFORMS)(*specs)
        except NotImplementedError:  # (a primitive some platform cannot lower: eig on TPU)
            here = (jax.default_backend(),)
            exported = jax_export.export(jax.jit(self.call), platforms=here)(*specs)
        for order in range(JaxModule.MAX_DERIVATIVE, -1, -1):
            try:
                return exported.serialize(vjp_order=order)
            except Exception:  # noqa: BLE001 (jax has no VJP of it: a while loop)
                if order == 0:
                    raise
        raise AssertionError("unreachable")


def _cotangent_aval(aval: Any) -> Any:
    """The aval of a cotangent of a value of ``aval``: float0 for integers and booleans."""
    if jax.dtypes.issubdtype(aval.dtype, np.inexact):
        return aval
    return jax.core.ShapedArray(aval.shape, jax.dtypes.float0)


# flowjit's own source folders (the layers and the public face), for _origin to skip
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN = tuple(
    os.path.join(_ROOT, d) + os.sep
    for d in ("ir", "passes", "backends", "runtime", "compiler", "flowjit")
)


def _origin(eqn: Any) -> Location | None:
    """The line of jax code ``eqn`` came from (the innermost frame neither jax's nor
    flowjit's), or None."""
    for frame in user_frames(eqn.source_info.traceback):
        path = os.path.abspath(frame.file_name)
        if not (path.startswith(_OWN) or os.path.dirname(path) == _ROOT):
            return Location(os.path.basename(frame.file_name), frame.start_line)
    return None


def _added_to_zero(eqn: Any) -> Any:
    """For ``x + 0``, ``0 + x`` or ``x - 0`` with a literal zero of x's shape or a scalar one
    (``nu + eps_root`` in optax): x's variable, which jax.jit gives (XLA's algebraic simplifier
    drops the zero, whatever its sign); else None. (flowjit's own add keeps IEEE's zero signs,
    which costs an optimization barrier around a constant zero.)"""
    if eqn.primitive.name not in ("add", "sub"):
        return None
    out = eqn.outvars[0].aval
    for i, zero in enumerate(eqn.invars):
        other = eqn.invars[1 - i]
        if (
            (i == 1 or eqn.primitive.name == "add")
            and isinstance(zero, jax.extend.core.Literal)
            and not isinstance(other, jax.extend.core.Literal)
            and np.ndim(zero.val) == 0
            and np.asarray(zero.val) == 0
            and other.aval.shape == out.shape
            and other.aval.dtype == out.dtype
        ):
            return other
    return None


def _jax_only(var: Any) -> bool:
    """Whether ``var`` has a type only jax has (a typed PRNG key)."""
    return jax.dtypes.issubdtype(var.aval.dtype, jax.dtypes.extended)


def _jax_only_in(eqn: Any) -> bool:
    return any(_jax_only(v) for v in (*eqn.invars, *eqn.outvars))


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


def _when(accepts: Callable[..., bool], translate: Callable) -> Callable:
    """``translate``, for an equation whose operands ``accepts``; any other is held whole."""
    return lambda eqn, *args: translate(eqn, *args) if accepts(*args) else _held(eqn, *args)


def _floats(*args: Any) -> bool:
    """Operands of one float dtype (what the flowjit op takes where jax also takes others)."""
    return _is_float(args[0]) and len({a.dtype for a in args}) == 1


def _bools(x: Any) -> bool:
    return x.dtype == np.bool_


def _numbers(x: Any) -> bool:
    return x.dtype != np.bool_


def _static_slice(x, start: Sequence[int], limit: Sequence[int]):
    return emit(S.slice_, [x], start=tuple(start), limit=tuple(limit), strides=(1,) * len(x.shape))


def _slice(eqn, x):
    p = eqn.params
    return emit(
        S.slice_,
        [x],
        start=tuple(map(int, p["start_indices"])),
        limit=tuple(map(int, p["limit_indices"])),
        strides=tuple(map(int, p["strides"] or (1,) * len(x.shape))),
    )


def _pad(eqn, x, value):
    """Edge padding only (interior padding is held): negative padding crops, as a slice of the
    result padded by the positive amounts."""
    config = [tuple(map(int, dim)) for dim in eqn.params["padding_config"]]
    if any(interior for _, _, interior in config):
        return _held(eqn, x, value)
    low = tuple(max(lo, 0) for lo, _, _ in config)
    high = tuple(max(hi, 0) for _, hi, _ in config)
    if any(low) or any(high):
        x = emit(S.pad, [x, value], low=low, high=high)
    if all(lo >= 0 and hi >= 0 for lo, hi, _ in config):
        return x
    start = [max(-lo, 0) for lo, _, _ in config]
    limit = [n - max(-hi, 0) for n, (_, hi, _) in zip(x.shape, config)]
    return _static_slice(x, start, limit)


def _split(eqn, x):
    axis, begin, parts = eqn.params["axis"], 0, []
    for size in map(int, eqn.params["sizes"]):
        start = [begin if d == axis else 0 for d in range(len(x.shape))]
        limit = [begin + size if d == axis else n for d, n in enumerate(x.shape)]
        parts.append(_static_slice(x, start, limit))
        begin += size
    return parts


def _cumulative(opdef):
    """cumsum, cumprod, cummax, cummin or cumlogsumexp (``opdef``) along the same axis."""
    return lambda eqn, x: emit(
        opdef, [x], axis=eqn.params["axis"], reverse=bool(eqn.params["reverse"])
    )


def _arg_extremum(opdef):
    """argmax or argmin (``opdef``), whose int32 index is converted to ``index_dtype``."""

    def translate(eqn, x):
        (axis,) = eqn.params["axes"]
        index = emit(opdef, [x], axis=axis, keepdims=False)
        dtype = np.dtype(eqn.params["index_dtype"])
        return index if dtype == index.dtype else emit(E.convert, [index], dtype=dtype)

    return translate


def _sort(eqn, *xs):
    """A sort on one key: the key alone is flowjit's sort; with other operands, every operand
    is taken along the key's stable argsort. An unstable sort is held where the order of equal
    keys shows (another operand, or float keys: -0.0 == 0.0 and nans compare equal)."""
    p = eqn.params
    shows = len(xs) > 1 or _is_float(xs[0])
    if p["num_keys"] != 1 or (shows and not p["is_stable"]):
        return _held(eqn, *xs)
    axis = p["dimension"]
    if len(xs) == 1:
        return [emit(O.sort, [xs[0]], axis=axis, descending=False)]
    order = emit(O.argsort, [xs[0]], axis=axis, descending=False)
    return [emit(X.take_along_axis, [x, order], axis=axis) for x in xs]


def _indexing(x, indices, axes, collapsed, batching, index_batching, window_dims):
    """(take, axis) or (take_along_axis, axis) where a gather's or a scatter's dimension
    numbers index ``x`` as jnp.take and x[i] do (or jnp.take_along_axis), else None."""
    if len(axes) != 1 or tuple(collapsed) != tuple(axes) or indices.shape[-1:] != (1,):
        return None
    axis, rank, batch = axes[0], len(x.shape), len(indices.shape) - 1
    others = tuple(d for d in range(rank) if d != axis)
    if x.shape[axis] == 0:
        return None
    if not batching and tuple(window_dims) == tuple(range(axis)) + tuple(
        range(axis + batch, batch + rank - 1)
    ):
        return X.take, axis
    if tuple(batching) == tuple(index_batching) == others and batch == rank and not window_dims:
        return X.take_along_axis, axis
    return None


# The modes of a gather or scatter (of out-of-range indices) translated: jax's other modes hold
_MODES = ("CLIP", "PROMISE_IN_BOUNDS", "FILL_OR_DROP")


def _mode(eqn) -> str:
    return str(eqn.params["mode"]).rsplit(".", 1)[-1]


def _clamped_index(indices, n: int):
    """The indices (without their last dim, of one) and the indices clamped into [0, n - 1]
    as XLA's gather clamps them (flowjit's take would first wrap a negative one)."""
    index = emit(S.reshape, [indices], shape=tuple(indices.shape[:-1]))
    clamped = index
    if n - 1 < np.iinfo(index.dtype).max:
        clamped = emit(E.min_, [index, _constant(np.asarray(n - 1, index.dtype))])
    if np.issubdtype(index.dtype, np.signedinteger):
        clamped = emit(E.max_, [clamped, _constant(np.zeros((), index.dtype))])
    return index, clamped


def _in_range(index, clamped, opdef, axis: int, rank: int):
    """Where the index was in range, shaped to broadcast against what ``opdef`` reads."""
    inside = emit(E.eq, [clamped, index])
    if opdef is X.take and axis < rank - 1:  # (the index's dims, then x's after the axis)
        inside = emit(S.reshape, [inside], shape=index.shape + (1,) * (rank - 1 - axis))
    return inside


def _gather(eqn, x, indices):
    """The gathers of jnp.take and x[i] (flowjit's take) and of jnp.take_along_axis, of clamped
    indices; mode "fill" then puts fill_value where an index was out of range. Other gathers,
    and fill mode's 64-bit indices (jax first casts them to 32 bits), are held."""
    dims, mode = eqn.params["dimension_numbers"], _mode(eqn)
    form = _indexing(
        x,
        indices,
        dims.start_index_map,
        dims.collapsed_slice_dims,
        dims.operand_batching_dims,
        dims.start_indices_batching_dims,
        dims.offset_dims,
    )
    if form is None or mode not in _MODES:
        return _held(eqn, x, indices)
    opdef, axis = form
    along = opdef is X.take_along_axis
    window = tuple(1 if d == axis or along else n for d, n in enumerate(x.shape))
    wide = mode == "FILL_OR_DROP" and indices.dtype.itemsize == 8
    if tuple(map(int, eqn.params["slice_sizes"])) != window or wide:
        return _held(eqn, x, indices)
    index, clamped = _clamped_index(indices, x.shape[axis])
    out = emit(opdef, [x, clamped], axis=axis)
    if mode != "FILL_OR_DROP":
        return out
    fill = _constant(np.asarray(eqn.params["fill_value"], x.dtype))
    return emit(E.select, [_in_range(index, clamped, opdef, axis, len(x.shape)), out, fill])


def _scatter_add(eqn, x, indices, updates):
    """x.at[i].add(u) and jax.ops.segment_sum (take's transpose): flowjit's scatter_add at
    clamped indices, where an update out of range, but in mode "clip", adds -0.0 (x + -0.0 is x,
    -0.0 included) instead of being dropped. Held: other scatters, and float16 and bfloat16
    (flowjit's scatter_add sums them in float32)."""
    dims, mode = eqn.params["dimension_numbers"], _mode(eqn)
    form = _indexing(
        x,
        indices,
        dims.scatter_dims_to_operand_dims,
        dims.inserted_window_dims,
        dims.operand_batching_dims,
        dims.scatter_indices_batching_dims,
        dims.update_window_dims,
    )
    low = _is_float(x) and x.dtype.itemsize == 2
    if form is None or form[0] is not X.take or low or x.dtype == np.bool_ or mode not in _MODES:
        return _held(eqn, x, indices, updates)
    axis = form[1]
    if updates.shape != x.shape[:axis] + indices.shape[:-1] + x.shape[axis + 1 :]:
        return _held(eqn, x, indices, updates)
    index, clamped = _clamped_index(indices, x.shape[axis])
    if mode != "CLIP":
        nothing = _constant(np.asarray(-0.0 if _is_float(x) else 0, x.dtype))
        inside = _in_range(index, clamped, X.take, axis, len(x.shape))
        updates = emit(E.select, [inside, updates, nothing])
    return emit(X.scatter_add, [x, clamped, updates], axis=axis)


def _broadcast_in_dim(eqn, x):
    shape, dims = tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
    ranked = [1] * len(shape)
    for i, d in enumerate(dims):
        ranked[d] = x.shape[i]
    if tuple(ranked) != tuple(x.shape):
        x = emit(S.reshape, [x], shape=tuple(ranked))
    return x if tuple(x.shape) == shape else emit(S.broadcast_to, [x], shape=shape)


def _reshape(eqn, x):
    """The result's shape, in row-major order: of ``squeeze``, ``expand_dims``, and of
    ``reshape``, whose ``dimensions`` (an order to read the operand in) transposes first."""
    order = eqn.params.get("dimensions") if eqn.primitive.name == "reshape" else None
    if order is not None and tuple(order) != tuple(range(len(x.shape))):
        x = emit(S.transpose, [x], perm=tuple(order))
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


def _conv(eqn, x, w):
    """A 2-D convolution in any layout: x and w transposed to NHWC and HWIO, flowjit's conv2d,
    and its NHWC result transposed to the output's layout. Held: batch groups, a result dtype
    other than the operands', or a precision asked for (flowjit's is always the highest)."""
    p = eqn.params
    lhs, rhs, out = p["dimension_numbers"]
    if (
        len(lhs) != 4
        or p["batch_group_count"] != 1
        or p["precision"] not in (None, jax.lax.Precision.DEFAULT)
        or eqn.outvars[0].aval.dtype != x.dtype
        or x.dtype != w.dtype
    ):
        return _held(eqn, x, w)
    x = _transposed(x, (lhs[0], lhs[2], lhs[3], lhs[1]))
    w = _transposed(w, (rhs[2], rhs[3], rhs[1], rhs[0]))
    y = emit(
        N.conv2d,
        [x, w],
        strides=tuple(map(int, p["window_strides"])),
        padding=tuple(int(n) for pair in p["padding"] for n in pair),
        lhs_dilation=tuple(map(int, p["lhs_dilation"])),
        rhs_dilation=tuple(map(int, p["rhs_dilation"])),
        feature_group_count=int(p["feature_group_count"]),
    )
    perm = [0] * 4
    for logical, axis in zip((0, 3, 1, 2), out):  # (N, C, H, W: where each is in y and out)
        perm[axis] = logical
    return _transposed(y, tuple(perm))


def _transposed(x, perm: tuple[int, ...]):
    return x if perm == tuple(range(len(perm))) else emit(S.transpose, [x], perm=perm)


def _imported(closed: Any, name: str) -> Callable:
    """A function of Tensors computing the closed jaxpr ``closed``, brought in as the rest is
    (called where a flowjit subgraph is being traced)."""
    return lambda *args: _Importer(name).run(closed, args)


def _cond(eqn, index, *operands):
    """jax's cond (lax.cond and lax.switch): fj.cond on index == 0, 1, ... in turn, as XLA's
    case picks a branch, so an index out of range runs the last one."""
    branches = [_imported(b, "cond") for b in eqn.params["branches"]]

    def case(k: int, *args: Any) -> list:
        if k == len(branches) - 1:
            return branches[k](*args)
        hit = emit(E.eq, [index, _constant(np.asarray(k, index.dtype))])
        return CF.cond(hit, branches[k], functools.partial(case, k + 1), *args)

    return case(0, *operands)


def _while(eqn, *args):
    p = eqn.params
    tests, bodies = p["cond_nconsts"], p["body_nconsts"]
    test_consts, body_consts = args[:tests], args[tests : tests + bodies]
    test, body = _imported(p["cond_jaxpr"], "while"), _imported(p["body_jaxpr"], "while")
    return CF.while_loop(
        lambda carry: test(*test_consts, *carry)[0],
        lambda carry: body(*body_consts, *carry),
        list(args[tests + bodies :]),
    )


def _scan(eqn, *args):
    """jax's scan: fj.scan of the body on (consts, carry, xs), giving the carry and the ys."""
    p = eqn.params
    consts, carry, xs = map(list, p["ft_in"].update(args).unpack())
    body = _imported(p["jaxpr"], "scan")

    def step(c: list, x: list) -> tuple:
        out = body(*consts, *c, *x)
        return out[: len(carry)], out[len(carry) :]

    final, ys = CF.scan(step, carry, xs, length=p["length"], reverse=bool(p["reverse"]))
    return [*final, *ys]


def _select_n(eqn, which, *cases):
    """cases[which]: a bool picks between two cases; an integer as jax lowers it, by halving
    the cases with which < mid, so an index below range picks the first case and one above it
    the last."""
    if which.dtype == np.bool_:
        return cases[0] if len(cases) == 1 else emit(E.select, [which, cases[1], cases[0]])

    def pick(offset: int, some: Sequence[Any]) -> Any:
        if len(some) == 1:
            return some[0]
        mid = len(some) // 2
        below = emit(E.lt, [which, _constant(np.asarray(offset + mid, which.dtype))])
        return emit(E.select, [below, pick(offset, some[:mid]), pick(offset + mid, some[mid:])])

    return pick(0, cases)


def _clamp(eqn, low, x, high):
    """XLA's clamp: min(max(low, x), high), in this order, which gives its nans (of either sign)
    and signed zeros; low > high gives high."""
    return emit(E.min_, [emit(E.max_, [low, x]), high])


def _round(eqn, x):
    """Half to even only (jnp.round's); lax.round's default, half away from zero, is held."""
    if eqn.params["rounding_method"] != jax.lax.RoundingMethod.TO_NEAREST_EVEN or not _is_float(x):
        return _held(eqn, x)
    return emit(E.round_, [x])


def _bitcast(eqn, x):
    dtype = np.dtype(eqn.params["new_dtype"])
    if dtype.itemsize != x.dtype.itemsize or np.bool_ in (dtype, x.dtype):
        return _held(eqn, x)
    return emit(B.bitcast_convert, [x], dtype=dtype)


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
    importer.flush([eqn], env, set(eqn.outvars))
    outs = [env[v] for v in eqn.outvars]
    return outs if eqn.primitive.multiple_results else outs[0]


_NATIVE: dict[str, Callable] = {
    **{
        name: _unary(opdef)
        for name, opdef in {
            "neg": E.neg,
            "exp": E.exp,
            "exp2": E.exp2,
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
            "erfc": E.erfc,
            "erf_inv": E.erf_inv,
            "lgamma": E.lgamma,
            "digamma": E.digamma,
            "is_finite": E.isfinite,
            "not": E.not_,
            "stop_gradient": E.stop_gradient,
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
            "rem": E.rem,
            "eq": E.eq,
            "ne": E.ne,
            "lt": E.lt,
            "le": E.le,
            "gt": E.gt,
            "ge": E.ge,
            "and": E.and_,
            "or": E.or_,
            "xor": E.xor,
            "shift_left": B.shift_left,
            "shift_right_logical": B.shift_right_logical,
            "shift_right_arithmetic": B.shift_right_arithmetic,
        }.items()
    },
    "div": _when(_floats, _binary(E.div)),
    "pow": _when(_floats, _binary(E.pow_)),
    "clamp": _clamp,
    "round": _round,
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
    "bitcast_convert_type": _bitcast,
    "reduce_precision": lambda eqn, x: emit(
        E.reduce_precision,
        [x],
        exponent_bits=eqn.params["exponent_bits"],
        mantissa_bits=eqn.params["mantissa_bits"],
    ),
    "slice": _slice,
    "pad": _pad,
    "split": _split,
    "rev": lambda eqn, x: emit(S.reverse, [x], axes=tuple(eqn.params["dimensions"])),
    "dynamic_slice": lambda eqn, x, *starts: emit(
        X.dynamic_slice, [x, *starts], sizes=tuple(map(int, eqn.params["slice_sizes"]))
    ),
    "dynamic_update_slice": lambda eqn, x, update, *starts: emit(
        X.dynamic_update_slice, [x, update, *starts]
    ),
    "gather": _gather,
    "scatter-add": _scatter_add,
    "dot_general": _dot_general,
    "conv_general_dilated": _conv,
    "reduce_sum": _reduce(R.reduce_sum),
    "reduce_max": _reduce(R.reduce_max),
    "reduce_min": _reduce(R.reduce_min),
    "reduce_prod": _reduce(R.reduce_prod),
    "reduce_and": _when(_bools, _reduce(R.reduce_and)),
    "reduce_or": _when(_bools, _reduce(R.reduce_or)),
    "argmax": _when(_numbers, _arg_extremum(R.argmax)),
    "argmin": _when(_numbers, _arg_extremum(R.argmin)),
    "cumsum": _when(_numbers, _cumulative(R.cumsum)),
    "cumprod": _when(_numbers, _cumulative(R.cumprod)),
    "cummax": _when(_numbers, _cumulative(R.cummax)),
    "cummin": _when(_numbers, _cumulative(R.cummin)),
    "cumlogsumexp": _when(_floats, _cumulative(R.cumlogsumexp)),
    "sort": _sort,
    "select_n": _select_n,
    "cond": _cond,
    "while": _while,
    "scan": _scan,
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
