"""``fj.Module``: an object that holds Variables, in the manner of ``tf.Module`` (API.md, 12).

A module's attributes may be Variables, other modules, and lists, tuples and dicts of them,
nested. ``named_variables()`` walks them in attribute order (the order the attributes were
first set; list positions and dict keys in order) and gives each Variable its **path**, the
attribute names joined by ``/`` (``blocks/3/attn/query/kernel``); a Variable reached twice is
listed once, under its first path. ``variables`` and ``trainable_variables`` are the same walk
as lists. Checkpoints (``fj.save(path, module)``) and optimizers key on those paths.

Variables a module makes with ``self.param`` are *named* by their path: when a module (or a
list or dict holding modules) is set as an attribute of another, the variables under it are
renamed to their paths from the outer module, so IR dumps and optimizer slots show
``blocks/3/attn/query/kernel``. A Variable the user made and named keeps its name.

``self.param`` creates a variable eagerly, at once, from an initializer (``fj.nn.
initializers``, jax's: called as ``init(key, shape, dtype)`` with a key drawn from an
``fj.random.Generator``) or a value. Layers that learn their input size call it on their first
call, inside a compiled function too: the variable is made once, with a concrete value, as
the optimizer's slots are.

Each variable may carry **logical axis names** (``axes=("embed", "mlp")``). Under
``fj.nn.axis_rules(rules)`` and ``with mesh:``, a variable made by ``param`` is sharded as the
rules map its logical axes to mesh axes (flax's logical partitioning): one model runs data
parallel, FSDP or tensor parallel by changing the rules alone.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ArgumentError, ShardingError
from flowjit.runtime.sharding import P, active_mesh

from .dtypes import canonical_dtype
from .location import user_location
from .trace import outside_traces
from .variable import Variable

# -- logical axes ----------------------------------------------------------------------------

Rules = Sequence[tuple[str, Any]]


class _Rules(threading.local):
    def __init__(self) -> None:
        self.stack: list[tuple[tuple[str, Any], ...]] = []


_RULES = _Rules()


@contextlib.contextmanager
def axis_rules(rules: Rules) -> Iterator[None]:
    """Inside, logical axis names map to mesh axes as ``rules`` say: pairs ``(logical,
    mesh_axis)``, ``mesh_axis`` a mesh axis name, a tuple of them, or None (replicated), the
    first pair naming a logical axis winning (as flax's ``logical_axis_rules``)."""
    checked = []
    for i, pair in enumerate(rules):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ArgumentError(
                f"fj.nn.axis_rules: rule {i} is {pair!r}; each rule is a pair (logical axis "
                "name, mesh axis name or tuple of them or None), e.g. ('embed', 'data')",
                loc=user_location(),
            )
        checked.append((pair[0], tuple(pair[1]) if isinstance(pair[1], list) else pair[1]))
    _RULES.stack.append(tuple(checked))
    try:
        yield
    finally:
        _RULES.stack.pop()


def current_rules() -> tuple[tuple[str, Any], ...] | None:
    """The innermost ``axis_rules`` in force, or None."""
    return _RULES.stack[-1] if _RULES.stack else None


def logical_spec(axes: Sequence[str | None], rules: Rules | None = None) -> P:
    """The partition spec ``axes`` (logical names, None for a replicated dimension) map to
    under ``rules`` (default: those in force). A mesh axis is used once: a later dimension whose
    rule names an axis already taken is replicated, as in flax."""
    rules = current_rules() if rules is None else tuple(rules)
    table: dict[str, Any] = {}
    for logical, mesh_axis in rules or ():
        table.setdefault(logical, mesh_axis)
    used: set[str] = set()
    spec = []
    for name in axes:
        target = table.get(name) if name is not None else None
        names = target if isinstance(target, tuple) else (() if target is None else (target,))
        if used.intersection(names):
            target, names = None, ()
        used.update(names)
        spec.append(target)
    while spec and spec[-1] is None:
        spec.pop()
    return P(*spec)


def rules_sharding(axes: Sequence[str | None] | None) -> P | None:
    """The spec a variable with logical ``axes`` is made with: under ``axis_rules`` and a
    mesh, what the rules map them to; else None (not sharded)."""
    if axes is None or current_rules() is None or active_mesh() is None:
        return None
    return logical_spec(axes)


def with_logical_constraint(x: Any, axes: Sequence[str | None]) -> Any:
    """``fj.with_sharding(x, spec)`` for the spec ``axes`` map to under the rules in force;
    ``x`` unchanged where no rules or no mesh are in force (one model, any layout)."""
    if current_rules() is None or active_mesh() is None:
        return x
    from .sharding import with_sharding

    return with_sharding(x, logical_spec(axes))


# -- initializing ------------------------------------------------------------------------------


class KeyStream:
    """The keys a model's initial values are drawn with: ``fold_in(PRNGKey(seed), n)`` for
    n = 0, 1, ... in the order the variables are made (a Python counter: drawing needs no
    device state, so a layer can make its variables while a function is traced)."""

    def __init__(self, seed: int):
        self.seed, self.count = int(seed), 0

    def next(self) -> Any:
        with jax.ensure_compile_time_eval():
            key = jax.random.fold_in(jax.random.PRNGKey(self.seed), self.count)
        self.count += 1
        return key


def key_stream(rng: Any, what: str) -> KeyStream | None:
    """Where a module's initial values come from: ``rng`` an int seed (a new stream), a
    KeyStream, or an ``fj.random.Generator`` (the stream of its seed, kept apart from its
    draws); None stays None (deterministic initializers need no key). Pass one Generator (or
    stream) to all the layers of a model so that they draw different values."""
    from .random_api import Generator

    if rng is None or isinstance(rng, KeyStream):
        return rng
    if isinstance(rng, Generator):
        stream = rng.__dict__.get("_init_keys")
        if stream is None:  # (a stream apart from the generator's: seed + 2**31 folded)
            stream = rng.__dict__["_init_keys"] = KeyStream(rng.seed ^ 0x5EED5EED)
        return stream
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return KeyStream(int(rng))
    raise ArgumentError(
        f"{what}: rng= takes an fj.random.Generator (shared by the model's layers) or an int "
        f"seed, to draw initial values; got {type(rng).__name__}",
        loc=user_location(),
    )


def generator(rng: Any, what: str) -> Any:
    """The ``fj.random.Generator`` a layer draws masks from: ``rng`` itself, or a new one
    seeded by the int ``rng``."""
    from .random_api import Generator

    if isinstance(rng, Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return Generator(int(rng), name=f"{what}.rng")
    raise ArgumentError(
        f"{what} needs rng=, an fj.random.Generator or an int seed, to draw its random "
        f"masks; got {type(rng).__name__}",
        loc=user_location(),
    )


def initial_value(init: Any, rng: Any, shape: tuple[int, ...], dtype: Any, what: str) -> Any:
    """``init(key, shape, dtype)`` with the next key of ``rng`` (``key_stream``'s; ``init`` a
    jax initializer such as ``fj.nn.initializers.lecun_normal()``), computed at once even while
    a function is traced; or ``init`` itself where it is an array or number."""
    if not callable(init):
        value = np.asarray(init, dtype)
        if value.shape != shape:
            value = np.broadcast_to(value, shape).copy()
        return value
    stream = key_stream(rng, what)
    with outside_traces(), jax.ensure_compile_time_eval():
        # (no rng: deterministic initializers, ones and zeros, take no key)
        key = None if stream is None else stream.next()
        try:
            value = init(key, shape, dtype)
        except Exception as err:
            if rng is None:
                raise ArgumentError(
                    f"{what} needs rng=, an fj.random.Generator or an int seed: its "
                    f"initializer {getattr(init, '__name__', init)!r} draws random values "
                    f"({type(err).__name__}: {err})",
                    loc=user_location(),
                ) from err
            raise ArgumentError(
                f"{what}: its initializer {getattr(init, '__name__', init)!r} failed for shape "
                f"{shape} and dtype {np.dtype(dtype).name}: {type(err).__name__}: {err}",
                loc=user_location(),
            ) from err
    if tuple(np.shape(value)) != tuple(shape):
        raise ArgumentError(
            f"{what}: its initializer gave shape {np.shape(value)}, not {shape}",
            loc=user_location(),
        )
    return value


# -- the module --------------------------------------------------------------------------------

_PATH_SEGMENT = re.compile(r"[^/]+")


class Module:
    """Holds Variables and submodules as attributes; ``__call__`` is the user's (module
    docstring). ``Module(name=None)``: ``name`` defaults to the class name in snake case.
    Subclasses need not call ``super().__init__()``."""

    def __init__(self, *, name: str | None = None):
        if name is not None and not (isinstance(name, str) and _PATH_SEGMENT.fullmatch(name)):
            raise ArgumentError(
                f"a module's name must be a non-empty str without '/', got {name!r}",
                loc=user_location(),
            )
        object.__setattr__(self, "_name", name)

    @property
    def name(self) -> str:
        name = self.__dict__.get("_name")
        return name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    @property
    def path(self) -> str:
        """Where this module lies under the outermost module it was set in ("" at the top)."""
        return self.__dict__.get("_path", "")

    def __setattr__(self, attr: str, value: Any) -> None:
        object.__setattr__(self, attr, value)
        if not attr.startswith("_"):
            _name_paths(self, attr)

    # -- what it holds -------------------------------------------------------------------------
    def named_variables(self) -> dict[str, Variable]:
        """Path -> Variable, in attribute order (module docstring)."""
        found: dict[str, Variable] = {}
        seen: set[int] = set()
        for path, leaf in _walk(self, "", {id(self)}):
            if isinstance(leaf, Variable) and id(leaf) not in seen:
                seen.add(id(leaf))
                found[path] = leaf
        return found

    @property
    def variables(self) -> list[Variable]:
        """Every Variable under the module, in ``named_variables`` order."""
        return list(self.named_variables().values())

    @property
    def trainable_variables(self) -> list[Variable]:
        """The variables with ``trainable=True``, in the same order."""
        return [v for v in self.variables if v.trainable]

    def named_modules(self) -> dict[str, Module]:
        """Path -> module, this one first (under "")."""
        found: dict[str, Module] = {"": self}
        for path, leaf in _walk(self, "", {id(self)}):
            if isinstance(leaf, Module) and leaf not in found.values():
                found[path] = leaf
        return found

    @property
    def submodules(self) -> list[Module]:
        """Every module under this one (not itself), in walk order."""
        return list(self.named_modules().values())[1:]

    # -- making variables ----------------------------------------------------------------------
    def param(
        self,
        attr: str,
        init: Callable[..., Any] | Any,
        shape: Sequence[int],
        dtype: Any = np.float32,
        *,
        rng: Any = None,
        axes: Sequence[str | None] | None = None,
        trainable: bool = True,
    ) -> Variable:
        """Make the Variable ``self.<attr>``, of ``shape`` and ``dtype``, initialized by
        ``init`` (module docstring) with a key from ``rng`` (default: ``self.rng``), named
        by its path and sharded by its logical ``axes`` under the rules in force."""
        shape = tuple(int(d) for d in shape)
        dtype = canonical_dtype(dtype)
        if axes is not None and len(axes) != len(shape):
            raise ArgumentError(
                f"{type(self).__name__}.{attr}: axes {tuple(axes)} name {len(axes)} dimensions, "
                f"the shape {shape} has {len(shape)}",
                loc=user_location(),
            )
        path = _join(self.path, attr)
        if rng is None:
            rng = self.__dict__.get("rng")
        value = initial_value(init, rng, shape, dtype, f"{type(self).__name__} {path!r}")
        try:
            variable = Variable(
                value, name=path, dtype=dtype, trainable=trainable, sharding=rules_sharding(axes)
            )
        except ShardingError as err:
            raise err.with_context(loc=user_location()) from None
        variable.axes = None if axes is None else tuple(axes)
        variable._path_named = True
        setattr(self, attr, variable)
        return variable

    def _holds(self) -> list[tuple[str, Any]]:
        """(name, value) of what the module holds, the walk's children: its public
        attributes (a module may say otherwise: ScanLayers holds its stacked variables)."""
        return [(k, v) for k, v in vars(self).items() if not k.startswith("_")]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{p}: {v.shape}" for p, v in self.named_variables().items())
        return f"{type(self).__name__}({shapes})"


def _join(prefix: str, name: Any) -> str:
    return f"{prefix}/{name}" if prefix else str(name)


def _children(value: Any) -> Iterator[tuple[Any, Any]]:
    """(key, child) of a module (its public attributes), a dict or a list/tuple."""
    if isinstance(value, Module):
        yield from value._holds()
    elif isinstance(value, Mapping):
        yield from value.items()
    elif isinstance(value, (list, tuple)):
        yield from enumerate(value)


def _walk(value: Any, path: str, active: set[int]) -> Iterator[tuple[str, Any]]:
    """(path, leaf) for every Variable and module under ``value`` (modules before what they
    hold); a module that holds itself, directly or not, is walked once."""
    for key, child in _children(value):
        where = _join(path, key)
        if isinstance(child, Variable):
            yield where, child
        elif isinstance(child, (Module, Mapping, list, tuple)) and id(child) not in active:
            active.add(id(child))
            if isinstance(child, Module):
                yield where, child
            yield from _walk(child, where, active)
            active.discard(id(child))


def _name_paths(owner: Module, attr: str) -> None:
    """Give what ``owner`` first reaches through ``owner.<attr>`` its path from ``owner``'s
    own: a module its ``path``, a module-made variable its name. What ``owner`` reaches earlier
    (a shared variable set again) keeps its first path, and a value that holds ``owner`` (the
    module itself, or a reference back to an enclosing one) names nothing: paths run down."""
    value = vars(owner)[attr]
    if not isinstance(value, (Variable, Module, Mapping, list, tuple)):
        return
    if value is owner or any(leaf is owner for _, leaf in _walk(value, "", {id(value)})):
        return
    prefix = _join(owner.path, attr)
    seen: set[int] = set()
    for where, leaf in _walk(owner, owner.path, {id(owner)}):
        first = id(leaf) not in seen
        seen.add(id(leaf))
        if not first or not (where == prefix or where.startswith(prefix + "/")):
            continue
        if isinstance(leaf, Module):
            object.__setattr__(leaf, "_path", where)
        elif leaf._path_named:
            leaf.name = where


__all__ = [
    "Module",
    "axis_rules",
    "current_rules",
    "KeyStream",
    "generator",
    "initial_value",
    "key_stream",
    "logical_spec",
    "rules_sharding",
    "with_logical_constraint",
]
