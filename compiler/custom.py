"""``fj.custom_vjp`` and ``fj.custom_jvp`` (API.md, section 11): jax's signatures and
behaviour, on flowjit's IR.

A call traces the function and its rule into the subgraphs of one op (ir/ops/custom.py), in
child trace contexts as a cond's branches are: ``custom_vjp_call {body, fwd, bwd}`` or
``custom_jvp_call {body, jvp}``. Values they close over are the op's consts (differentiating
with respect to one is a GradientError, as in jax); ``nondiff_argnums`` arguments are closed
over too, Tensors among them behind ``stop_gradient``. The rule is traced at the call (so a
wrong ``bwd`` is reported there, whether or not anything is differentiated), and while it
is traced, a call of the same function inside it (``fwd`` calling ``f``) is its body inline:
jax runs the function there, not its rule.

Outside a trace the function is simply called."""

from __future__ import annotations

import abc
import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ArgumentError, Location, TensorType, TypeMismatchError
from flowjit.ir.ops import custom as C
from flowjit.ir.types import is_float

from .control_flow import (
    captured_union,
    check_same,
    outer_tensors,
    results_of,
    tensor_leaves,
    trace_function,
    unflatten,
    with_inputs,
)
from .location import user_location
from .trace import emit, tracing

tree = jax.tree_util


class _Tracing(threading.local):
    def __init__(self) -> None:
        self.rules: list[Any] = []  # the custom functions whose rule is being traced


_TRACING = _Tracing()


class _Custom(abc.ABC):
    """What custom_vjp and custom_jvp share: the function, its nondiff arguments, and the
    call's arguments resolved to positions and split into differentiated and not."""

    kind = ""

    def __init__(
        self,
        fun: Callable,
        nondiff_argnums: Sequence[int] = (),
        nondiff_argnames: Sequence[str] = (),
    ):
        functools.update_wrapper(self, fun)
        self.fun = fun
        positions = {int(i) for i in nondiff_argnums}
        if nondiff_argnames:
            names = list(inspect.signature(fun).parameters)
            positions.update(names.index(name) for name in nondiff_argnames)
        self.nondiff_argnums = tuple(sorted(positions))

    @abc.abstractmethod
    def _rule(self) -> Any:
        """The rule given (bwd or jvp), None before one is."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.fun, "__name__", "fn")
        if self._rule() is None:
            how = "defvjp(fwd, bwd)" if self.kind == "vjp" else "defjvp(jvp)"
            raise ArgumentError(
                f"no rule defined for the fj.custom_{self.kind} function {name}: give it one "
                f"with {name}.{how} before calling it",
                op=f"custom_{self.kind}",
                loc=user_location(),
            )
        args = _resolve(self.fun, args, kwargs, self.kind)
        if not tracing() or any(f is self for f in _TRACING.rules):
            return self.fun(*args)
        return self._call(args)

    @abc.abstractmethod
    def _call(self, args: tuple) -> Any:
        """The custom function's op, traced on ``args`` (the rule's subgraphs with it)."""

    def _split(self, args: tuple) -> tuple[list, list, Callable[[Sequence], list]]:
        """The nondiff arguments (their Tensors behind stop_gradient), the differentiated
        ones, and ``merge(diff) -> all arguments in order``."""
        from .autodiff import stop_gradient
        from .tensor import Tensor

        for i in self.nondiff_argnums:
            if i >= len(args):
                raise ArgumentError(
                    f"nondiff_argnums has {i}, but the function got {len(args)} arguments",
                    op=f"custom_{self.kind}",
                    loc=user_location(),
                )

        def static(x: Any) -> Any:
            return stop_gradient(x) if isinstance(x, Tensor) else x

        nondiff = [tree.tree_map(static, args[i]) for i in self.nondiff_argnums]
        diff = [a for i, a in enumerate(args) if i not in self.nondiff_argnums]

        def merge(values: Sequence) -> list:
            values, fixed = iter(values), iter(nondiff)
            n = len(args)
            return [next(fixed) if i in self.nondiff_argnums else next(values) for i in range(n)]

        return nondiff, diff, merge

    def _trace_rule(self, fn: Callable, name: str, args_tree: Any, types: list[TensorType]):
        _TRACING.rules.append(self)
        try:
            return trace_function(fn, name, args_tree, types)
        finally:
            _TRACING.rules.pop()


class custom_vjp(_Custom):
    """Like ``jax.custom_vjp``: ``f = fj.custom_vjp(fun)``, then ``f.defvjp(fwd, bwd)``:
    ``fwd(*args) -> (out, residuals)``, ``bwd(residuals, out_cotangent) -> a tuple with a
    cotangent per argument`` (None: zero; for a pytree argument, a pytree of its structure
    or None at any node). With ``nondiff_argnums`` those arguments are given to ``bwd``
    first and get no cotangent."""

    kind = "vjp"

    def __init__(self, fun, nondiff_argnums=(), nondiff_argnames=()):
        super().__init__(fun, nondiff_argnums, nondiff_argnames)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(
        self, fwd: Callable, bwd: Callable, symbolic_zeros: bool = False, **options: Any
    ) -> None:
        """Set the rule (jax's ``symbolic_zeros`` and ``optimize_remat`` are not supported:
        ``bwd`` gets zeros where a cotangent is zero)."""
        if symbolic_zeros or any(options.values()):
            raise ArgumentError(
                "fj.custom_vjp.defvjp takes no symbolic_zeros, optimize_remat or other "
                "options: bwd gets zeros for zero cotangents",
                op="custom_vjp",
                loc=user_location(),
            )
        self.fwd, self.bwd = fwd, bwd

    def _rule(self) -> Any:
        return self.bwd

    def _call(self, args: tuple) -> Any:
        nondiff, diff, merge = self._split(args)
        tensors, args_tree, arg_paths = tensor_leaves(tuple(diff), "args")
        types = [t._value.type for t in tensors]
        body = trace_function(lambda *a: self.fun(*merge(a)), "body", args_tree, types)
        fwd_name, bwd_name = _named(self.fwd), _named(self.bwd)

        def forward(*a: Any) -> tuple:
            out = self.fwd(*merge(a))
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeMismatchError(
                    f"fj.custom_vjp: {fwd_name} must return a pair (output, residuals), "
                    f"got a {type(out).__name__}",
                    op="custom_vjp",
                    loc=user_location(),
                )
            return tuple(out)

        fwd = self._trace_rule(forward, "fwd", args_tree, types)
        out_tree, res_tree = fwd.treedef.children()
        n = len(body.graph.outputs)
        check_same(
            f"fj.custom_vjp: {fwd_name}'s output",
            results_of(fwd, out_tree),
            results_of(body)[::2],
            f"{_named(self.fun)}'s output",
        )
        res_types = [v.type for v in fwd.graph.outputs[n:]]
        out_types = [v.type for v in body.graph.outputs]
        leaves = [(p, t) for p, t in zip(arg_paths, types)]

        def backward(res: Any, g: Any) -> list:
            cts = self.bwd(*nondiff, res, g)
            return _cotangents(cts, diff, leaves, bwd_name)

        bwd_tree = tree.treedef_tuple([res_tree, body.treedef])
        bwd = self._trace_rule(backward, "bwd", bwd_tree, res_types + out_types)
        captured = captured_union(body, fwd, bwd)
        results = emit(
            C.custom_vjp_call,
            [*outer_tensors(captured), *tensors],
            consts=len(captured),
            with_residuals=False,
            body=with_inputs(body, len(types), captured),
            fwd=with_inputs(fwd, len(types), captured),
            bwd=with_inputs(bwd, len(res_types) + n, captured),
        )
        return unflatten(body.treedef, results)


class custom_jvp(_Custom):
    """Like ``jax.custom_jvp``: ``f = fj.custom_jvp(fun)``, then ``f.defjvp(jvp)`` (a
    decorator too): ``jvp(primals, tangents) -> (out, out_tangent)``, ``primals`` and
    ``tangents`` tuples of the arguments. Reverse mode transposes the rule, so its tangent
    output must be linear in the tangents. With ``nondiff_argnums`` those arguments are
    given to ``jvp`` first and are left out of ``primals`` and ``tangents``."""

    kind = "jvp"

    def __init__(self, fun, nondiff_argnums=(), nondiff_argnames=()):
        super().__init__(fun, nondiff_argnums, nondiff_argnames)
        self.jvp: Callable | None = None

    def defjvp(self, jvp: Callable, symbolic_zeros: bool = False) -> Callable:
        if symbolic_zeros:
            raise ArgumentError(
                "fj.custom_jvp.defjvp takes no symbolic_zeros: jvp gets zeros for zero tangents",
                op="custom_jvp",
                loc=user_location(),
            )
        self.jvp = jvp
        return jvp

    def defjvps(self, *jvps: Callable | None) -> None:
        """A rule per argument, as jax's: ``jvps[i](tangent_i, out, *primals)`` is argument
        i's contribution to the output tangent (None: it has none)."""
        if self.nondiff_argnums:
            raise ArgumentError(
                "defjvps cannot be used with nondiff_argnums; use defjvp",
                op="custom_jvp",
                loc=user_location(),
            )

        def jvp(primals: tuple, tangents: tuple) -> tuple:
            out = self.fun(*primals)
            total = None
            for rule, t in zip(jvps, tangents):
                if rule is not None:
                    part = rule(t, out, *primals)
                    total = part if total is None else tree.tree_map(_plus, total, part)
            if total is None:
                total = tree.tree_map(lambda x: x * 0, out)
            return out, total

        self.defjvp(jvp)

    def _rule(self) -> Any:
        return self.jvp

    def _call(self, args: tuple) -> Any:
        nondiff, diff, merge = self._split(args)
        tensors, args_tree, _ = tensor_leaves(tuple(diff), "args")
        types = [t._value.type for t in tensors]
        body = trace_function(lambda *a: self.fun(*merge(a)), "body", args_tree, types)
        jvp_name, fun_name = _named(self.jvp), _named(self.fun)
        out_types = [v.type for v in body.graph.outputs]
        out_paths = [p.replace("result", "output", 1) for p in body.paths]

        def rule(primals: tuple, tangents: tuple) -> tuple:
            out = self.jvp(*nondiff, primals, tangents)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeMismatchError(
                    f"fj.custom_jvp: {jvp_name} must return a pair (output, output tangent), "
                    f"got a {type(out).__name__}",
                    op="custom_jvp",
                    loc=user_location(),
                )
            primal_out, tangent_out = out
            what = f"fj.custom_jvp: {jvp_name}'s output tangent"
            tangents = _flatten_like(tangent_out, body.treedef, what, "custom_jvp")
            fixed = [
                _leaf_like(t, p, ty, what, "custom_jvp")
                for t, p, ty in zip(tangents, out_paths, out_types)
            ]
            return primal_out, tree.tree_unflatten(body.treedef, fixed)

        jvp_tree = tree.treedef_tuple([args_tree, args_tree])
        jvp = self._trace_rule(rule, "jvp", jvp_tree, types + types)
        out_tree, _ = jvp.treedef.children()
        n = len(body.graph.outputs)
        primal_part = (out_tree, jvp.paths[:n], [v.type for v in jvp.graph.outputs[:n]])
        check_same(
            f"fj.custom_jvp: {jvp_name}'s output",
            primal_part,
            results_of(body)[::2],
            f"{fun_name}'s output",
        )
        captured = captured_union(body, jvp)
        results = emit(
            C.custom_jvp_call,
            [*outer_tensors(captured), *tensors],
            consts=len(captured),
            body=with_inputs(body, len(types), captured),
            jvp=with_inputs(jvp, 2 * len(types), captured),
        )
        return unflatten(body.treedef, results)


def _cotangents(cts: Any, diff: list, leaves: list, bwd_name: str) -> list:
    """The cotangents ``bwd`` returned, checked against the differentiated arguments
    ``diff`` (whose leaves are ``leaves``: (path, type)) and flattened to one Tensor per
    leaf: zeros for None (and for an argument that is not a float)."""
    if isinstance(cts, list) and len(cts) == len(diff):
        cts = tuple(cts)
    if not isinstance(cts, tuple) or len(cts) != len(diff):
        got = f"a tuple of {len(cts)}" if isinstance(cts, tuple) else f"a {type(cts).__name__}"
        raise TypeMismatchError(
            f"fj.custom_vjp: {bwd_name} must return a tuple with a cotangent per argument "
            f"({len(diff)}; None for zero), got {got}",
            op="custom_vjp",
            loc=user_location(),
        )
    what = f"fj.custom_vjp: {bwd_name}'s cotangent"
    flat = []
    for i, (ct, arg) in enumerate(zip(cts, diff)):
        arg_tree = tree.tree_structure(arg)
        if ct is None:
            flat += [None] * arg_tree.num_leaves
        else:
            flat += _flatten_like(ct, arg_tree, f"{what} {i}", "custom_vjp")
    return [_leaf_like(ct, path, t, what, "custom_vjp") for ct, (path, t) in zip(flat, leaves)]


def _leaf_like(value: Any, path: str, t: TensorType, what: str, op: str) -> Any:
    """``value`` (a cotangent or tangent given for the leaf at ``path``, of type ``t``) as a
    Tensor of type ``t``: zeros for None and for a leaf that is not a float; a float of
    another precision is converted (as jax allows); anything else is a TypeMismatchError."""
    from .numpy_api import asarray, zeros
    from .trace import convert

    if value is None or not is_float(t.dtype):
        return zeros(t.shape, t.dtype)
    try:
        tensor = asarray(value)
    except TypeError:
        raise TypeMismatchError(
            f"{what} for {path} is a {type(value).__name__}; give a Tensor (None for zero)",
            op=op,
            loc=user_location(),
        ) from None
    if tensor.shape != t.shape or not is_float(tensor.dtype):
        raise TypeMismatchError(
            f"{what} for {path} is {tensor._value.type}, but {path} is {t}; give it that "
            "shape and a float dtype",
            op=op,
            loc=user_location(),
        )
    return convert(tensor, t.dtype)


def _flatten_like(value: Any, treedef: Any, what: str, op: str) -> list:
    """``value``'s subtrees at the leaves of ``treedef`` (None where it gives None), or a
    TypeMismatchError if its structure is not ``treedef``'s."""
    try:
        return treedef.flatten_up_to(value)
    except (ValueError, TypeError):
        got = tree.tree_structure(value, is_leaf=lambda x: x is None)
        raise TypeMismatchError(
            f"{what} has structure {got}, but {treedef} is wanted; give that structure "
            "(None for zero)",
            op=op,
            loc=user_location(),
        ) from None


def _resolve(fun: Callable, args: tuple, kwargs: dict, kind: str) -> tuple:
    """The call's arguments as positions (keyword ones bound by ``fun``'s signature, defaults
    filled in), as jax's custom functions take them."""
    try:
        signature = inspect.signature(fun)
    except (TypeError, ValueError):  # (a builtin without one: positions as given)
        return args
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise ArgumentError(
            f"the arguments of the fj.custom_{kind} function {_named(fun)} could not be "
            f"bound to positions: {err}",
            op=f"custom_{kind}",
            loc=user_location(),
        ) from None
    bound.apply_defaults()
    if bound.kwargs:
        raise ArgumentError(
            f"the fj.custom_{kind} function {_named(fun)} has keyword-only parameters "
            f"{sorted(bound.kwargs)}; a custom function takes its arguments by position",
            op=f"custom_{kind}",
            loc=user_location(),
        )
    return tuple(bound.args)


def _named(fn: Callable) -> str:
    """``fn``'s name and where it is defined: ``f_bwd (train.py:12)``."""
    name = getattr(fn, "__name__", type(fn).__name__)
    code = getattr(fn, "__code__", None)
    if code is None:
        return name
    import os

    return f"{name} ({Location(os.path.basename(code.co_filename), code.co_firstlineno)})"


def _plus(a: Any, b: Any) -> Any:
    return a + b


__all__ = ["custom_jvp", "custom_vjp"]
