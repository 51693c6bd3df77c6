"""``fj.from_jax(fn)`` (API.md, section 11): any jax-traceable function, called on Tensors and
Variables inside a compiled function.

jax traces ``fn`` at the Tensors' shapes and dtypes (``jax.make_jaxpr``), and the jaxpr is
brought into flowjit's IR equation by equation: a primitive with a flowjit op becomes that op
(compiler/jax_primitives.py: the IR stays readable and flowjit's passes see it), a nested
``jit`` is brought in inline, and each run of other equations becomes one ``jax_call`` op
holding that part of the jaxpr (ir/ops/jax_call.py), which XLA compiles with the rest and jax
differentiates (exported by jax.export only when the graph is printed or saved:
``HeldComputation``). Every op made carries the user's line of the call; a ``jax_call`` is
named after ``fn`` and the primitives it holds.

Only Tensors and Variables (read where the call is) are traced; any other argument (a Python
number, a numpy array, a flag) is passed to ``fn`` as it is, as a constant of the trace.
Outside a compiled function, ``from_jax(fn)`` is ``fn`` (Variables passed as their values)."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Container
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import eager_constant_folding, jax, jax_export, user_frames
from flowjit.ir import FlowjitError, JaxModule, Location, TensorType, TracingError
from flowjit.ir.ops import jax_call as J

from .jax_primitives import NATIVE, as_constant
from .location import user_location
from .trace import current, emit, imported_from, tracing

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
        outs = Importer(label).run(closed, inputs)
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


class Importer:
    """Brings one jaxpr into the trace being built."""

    def __init__(self, label: str):
        self.label = label
        # (trace context, dtype, bytes) -> the constant made for a scalar literal: jax repeats
        # a literal at each use (optax's b1 for every parameter), flowjit makes it once
        self._literals: dict[tuple, Any] = {}

    def run(self, closed: Any, inputs: Sequence[Any]) -> list:
        env: dict[Any, Any] = {}
        for var, value in zip(closed.jaxpr.constvars, closed.consts):
            env[var] = as_constant(np.asarray(value))
        env.update(zip(closed.jaxpr.invars, inputs))
        return self.jaxpr(closed.jaxpr, env)

    def jaxpr(self, jaxpr: Any, env: dict, outer: Location | None = None) -> list:
        """The values of ``jaxpr``'s outputs, its inputs' values in ``env``; ``outer`` is the
        line of jax code an equation came from when its own record has none (the call of a
        nested jit)."""
        pending: list = []  # equations to hold in one jax_call, in order
        last_use = _last_uses(jaxpr)
        for i, eqn in enumerate(jaxpr.eqns):
            native = NATIVE.get(eqn.primitive.name)
            body = _inlined_body(eqn)
            # (a value of a jax-only type, a PRNG key, never leaves a jax_call: an equation
            # using one is held, and so is any equation while one held is still needed)
            later = _UsedFrom(last_use, i)
            keeps_open = any(_jax_only(v) and v in later for e in pending for v in e.outvars)
            if (native is None and body is None) or _jax_only_in(eqn) or keeps_open:
                pending.append(eqn)
                continue
            self.flush(pending, env, later, outer)
            pending = []
            kept = _added_to_zero(eqn)
            if kept is not None:  # (x + 0.0 is x under jax.jit: XLA's simplifier says so)
                env[eqn.outvars[0]] = self.read(kept, env)
                continue
            args = [self.read(v, env) for v in eqn.invars]
            if body is not None:
                inner = dict(zip(body.jaxpr.constvars, map(as_constant, body.consts)))
                inner.update(zip(body.jaxpr.invars, args))
                outs = self.jaxpr(body.jaxpr, inner, _origin(eqn) or outer)
            else:
                with imported_from(_origin(eqn) or outer):
                    outs = native(eqn, *args)
                outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
            env.update(zip(eqn.outvars, outs))
        self.flush(pending, env, _UsedFrom(last_use, len(jaxpr.eqns)), outer)
        return [self.read(v, env) for v in jaxpr.outvars]

    def read(self, var: Any, env: dict) -> Any:
        if isinstance(var, jax.extend.core.Literal):
            value = np.asarray(var.val, var.aval.dtype)
            if value.ndim:
                return as_constant(value)
            key = (current(), value.dtype, value.tobytes())
            if key not in self._literals:
                self._literals[key] = as_constant(value)
            return self._literals[key]
        return env[var]

    def flush(
        self, eqns: list, env: dict, needed: Container, outer: Location | None = None
    ) -> None:
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


def _last_uses(jaxpr: Any) -> dict:
    """For each variable ``jaxpr`` uses: the index of the last equation using it, or the
    number of equations if its outputs do."""
    last: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if not isinstance(v, jax.extend.core.Literal):
                last[v] = i
    for v in jaxpr.outvars:
        if not isinstance(v, jax.extend.core.Literal):
            last[v] = len(jaxpr.eqns)
    return last


class _UsedFrom:
    """The variables used by a jaxpr's equations from the ``start``-th on or by its outputs
    (a container: one per equation, without a set per equation, which would cost time and
    memory quadratic in the jaxpr's length)."""

    __slots__ = ("last_use", "start")

    def __init__(self, last_use: dict, start: int):
        self.last_use, self.start = last_use, start

    def __contains__(self, var: Any) -> bool:
        return self.last_use.get(var, -1) >= self.start


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
        name = _user_file(frame.file_name)
        if name is not None:
            return Location(name, frame.start_line)
    return None


@functools.cache  # (asked for each equation imported, of a few files)
def _user_file(file_name: str) -> str | None:
    """The base name of ``file_name``, or None if it is one of flowjit's own files."""
    path = os.path.abspath(file_name)
    if path.startswith(_OWN) or os.path.dirname(path) == _ROOT:
        return None
    return os.path.basename(file_name)


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


__all__ = ["from_jax"]
