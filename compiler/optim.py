"""``fj.optim``: optimizers are optax's (API.md, section 4). ``fj.optim.Optimizer(tx)`` (or
``fj.optim.from_optax(tx)``) takes any optax ``GradientTransformation``: schedules, ``chain``,
masks, ``MultiSteps``, EMA and the rest work as in optax. ``SGD``, ``Adam`` and ``AdamW`` are
names for optax's ``sgd``, ``adam`` and ``adamw``, with optax's defaults.

``opt.apply(grads, variables)`` inside a compiled function runs optax's ``update`` there
(through ``fj.from_jax``) and writes the new values into the Variables. The optimizer's state
is optax's state with fj.Variables for leaves, made by ``tx.init`` the first time it updates
a set of variables (so while the function is first traced) and reused afterwards: a leaf laid
out as a variable (Adam's moments) is named after it and sharded as it is, one shared by all
(the step count) after the first variable. ``opt.state(variables)`` is that pytree,
``opt.variables()`` lists every state Variable (to checkpoint them with the model), and
``opt.slots(variable)`` those of one variable (and the shared ones), by name.
``opt.minimize(loss_fn, variables)`` takes the gradients of ``loss_fn()`` with respect to the
variables and applies them. Outside a compiled function ``apply`` compiles itself."""

from __future__ import annotations

import collections
from typing import Any, Callable, Sequence

import numpy as np
import optax

from flowjit.backends.xla.jaxshim import eager_constant_folding, jax
from flowjit.ir import ArgumentError, ShapeError

from .autodiff import gradients
from .from_jax import from_jax
from .location import user_location
from .trace import tracing
from .variable import Variable


def _leaves(tree: Any) -> tuple[list[Any], Any]:
    return jax.tree_util.tree_flatten(tree, is_leaf=lambda x: isinstance(x, Variable))


class _State:
    """The optax state of one set of variables: a pytree whose leaves are Variables, and for
    each leaf the variable it belongs to (None: shared by all) and its name there."""

    def __init__(self, tx: Any, variables: Sequence[Variable], tree: Any):
        self.variables = tuple(variables)
        values = jax.tree_util.tree_unflatten(tree, [v.value for v in variables])
        # one program, run now (the compiled function's trace runs jax code eagerly, which
        # would compile each constant op of tx.init on its own)
        with eager_constant_folding(False):
            init = jax.jit(tx.init).lower(values).compile()
        initial = init(values)
        params_tree = jax.tree_util.tree_structure(values)
        # id(leaf value) -> the variable it is laid out as, and the path of its subtree
        owner: dict[int, tuple[Variable, Any]] = {}
        for path, sub in jax.tree_util.tree_flatten_with_path(
            initial, is_leaf=lambda x: _mirrors(x, params_tree)
        )[0]:
            if _mirrors(sub, params_tree):
                for v, leaf in zip(variables, jax.tree_util.tree_leaves(sub)):
                    owner[id(leaf)] = (v, path)
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(initial)
        placed = [owner.get(id(value), (None, path)) for path, value in leaves]
        # (two counts in a chain, or two traces: their positions in it tell them apart)
        names = [(id(v), _field(path)) for v, path in placed]
        repeated = {name for name, count in collections.Counter(names).items() if count > 1}
        self.leaves, self.owners, self.fields = [], [], []
        for (v, path), name, (_, value) in zip(placed, names, leaves):
            field = _field(path, positions=name in repeated)
            self.leaves.append(
                Variable(
                    np.asarray(value),
                    name=f"{(variables[0] if v is None else v).name}/{field}",
                    trainable=False,
                    # laid out as its variable (sharded with it)
                    sharding=v.sharding if v is not None else None,
                )
            )
            # (a step over the variables takes one lock for each and its slots)
            self.leaves[-1].lock_with(variables[0] if v is None else v)
            self.owners.append(v)
            self.fields.append(field)

    def tree(self) -> Any:
        return jax.tree_util.tree_unflatten(self.treedef, self.leaves)


def _mirrors(x: Any, params_tree: Any) -> bool:
    """Whether ``x`` is a subtree of the state laid out as the parameters (not a leaf)."""
    return not isinstance(x, (np.ndarray, jax.Array)) and (
        jax.tree_util.tree_structure(x) == params_tree
    )


def _field(path: Sequence[Any], positions: bool = False) -> str:
    """The name of a state leaf from its path: its attribute and key names (``mu``,
    ``count``), and with ``positions`` its positions in chains and lists (``1/count``)."""
    names = []
    for key in path:
        name = getattr(key, "name", getattr(key, "key", None))
        if name is None and positions:
            name = getattr(key, "idx", None)
        if name is not None:
            names.append(str(name))
    return "/".join(names) or "state"


class Optimizer:
    """Any optax ``GradientTransformation``, updating fj.Variables in place."""

    def __init__(self, tx: Any, *, name: str = "optimizer"):
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise ArgumentError(
                f"fj.optim.Optimizer takes an optax GradientTransformation (optax.adam(1e-3), "
                f"optax.chain(...)), got {type(tx).__name__}",
                op="optim",
                loc=user_location(),
            )
        self.tx, self.name = tx, name
        self._states: dict[tuple[Variable, ...], _State] = {}
        self._eager: dict[tuple[int, ...], Callable] = {}

    def state(self, variables: Any) -> Any:
        """The optimizer's state for ``variables`` (a pytree of them, as given to ``apply``):
        optax's state, with a Variable for each leaf; made (once) the first time."""
        return self._state_of(*_leaves(variables)).tree()

    def variables(self) -> list[Variable]:
        """Every state Variable of the optimizer, in the order the states were made."""
        return [leaf for state in self._states.values() for leaf in state.leaves]

    def slots(self, variable: Variable) -> dict[str, Variable]:
        """The state Variables of ``variable`` (Adam's ``mu`` and ``nu``) and the shared ones
        (the step ``count``), by name, once the optimizer has a state for it."""
        state = next(
            (s for key, s in self._states.items() if any(v is variable for v in key[1:])), None
        )
        if state is None:
            raise ArgumentError(
                f"the optimizer has no state for variable {variable.name!r} yet: it is made "
                "when apply first updates it, or by opt.state(variables) with the variables "
                "as apply gets them",
                op="optim",
                loc=user_location(),
            )
        return {
            field: leaf
            for leaf, owner, field in zip(state.leaves, state.owners, state.fields)
            if owner is None or owner is variable
        }

    def _state_of(self, variables: Sequence[Variable], tree: Any) -> _State:
        key = (tree, *variables)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(self.tx, variables, tree)
        return state

    def apply(self, grads: Any, variables: Any) -> None:
        """Update each Variable of ``variables`` (a Variable, a list or any pytree of them)
        with its gradient in ``grads`` (the same structure, e.g. from ``fj.gradients``)."""
        grad_leaves, _ = _leaves(grads)
        var_leaves, tree = _leaves(variables)
        if len(grad_leaves) != len(var_leaves):
            raise ShapeError(
                f"{type(self).__name__}.apply got {len(grad_leaves)} gradients for "
                f"{len(var_leaves)} variables",
                op="optim.apply",
                loc=user_location(),
            )
        for v in var_leaves:
            if not isinstance(v, Variable):
                raise TypeError(f"optimizers update fj.Variables, got {type(v).__name__}")
        if not tracing():
            key = tuple(id(v) for v in var_leaves)
            step = self._eager.get(key)
            if step is None:
                from .api import compile

                step = compile(lambda gs: self._apply(gs, var_leaves, tree), name="optim_apply")
                self._eager[key] = step
            step(list(grad_leaves))
            return
        self._apply(grad_leaves, var_leaves, tree)

    def _apply(self, grads: Sequence[Any], variables: Sequence[Variable], tree: Any) -> None:
        """Apply ``grads`` to ``variables``, the leaves of the pytree ``tree`` given: optax
        sees the parameters and gradients in that structure (its masks follow it)."""
        from .numpy_api import asarray

        grads = [asarray(g) for g in grads]
        for v, g in zip(variables, grads):
            if g.shape != v.shape:
                raise ShapeError(
                    f"the gradient of variable {v.name!r} has shape {g.shape}; the variable "
                    f"has shape {v.shape}",
                    op="optim.apply",
                    loc=user_location(),
                )
        state = self._state_of(variables, tree)
        params = [v.read() for v in variables]
        grads = [g.astype(v.dtype) for v, g in zip(variables, grads)]
        update = from_jax(self.tx.update, name=f"{self.name}.update")
        unflatten = jax.tree_util.tree_unflatten
        updates, new_state = update(unflatten(tree, grads), state.tree(), unflatten(tree, params))
        for leaf, value in zip(state.leaves, jax.tree_util.tree_leaves(new_state)):
            leaf.assign(value)
        updates = jax.tree_util.tree_leaves(updates)
        for v, p, u in zip(variables, params, updates):  # (optax.apply_updates)
            v.assign((p + u).astype(v.dtype))

    def minimize(self, loss_fn: Callable[[], Any], variables: Any) -> Any:
        """``loss = loss_fn()``; apply its gradients with respect to ``variables``; return
        the loss (inside a compiled function)."""
        var_leaves, tree = _leaves(variables)
        loss = loss_fn()
        self.apply(jax.tree_util.tree_unflatten(tree, gradients(loss, var_leaves)), variables)
        return loss


def from_optax(tx: Any, *, name: str = "optimizer") -> Optimizer:
    """An Optimizer running the optax GradientTransformation ``tx``."""
    return Optimizer(tx, name=name)


class SGD(Optimizer):
    """optax.sgd: ``w -= lr * g``, with momentum (``trace = g + momentum * trace``) and
    Nesterov's variant if asked."""

    def __init__(self, lr: Any, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(optax.sgd(lr, momentum or None, nesterov), name="sgd")


class Adam(Optimizer):
    """optax.adam (its defaults)."""

    def __init__(self, lr: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        super().__init__(optax.adam(lr, b1, b2, eps), name="adam")


class AdamW(Optimizer):
    """optax.adamw (its defaults: ``weight_decay=1e-4``; ``mask`` says which parameters
    decay)."""

    def __init__(
        self,
        lr: Any,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 1e-4,
        mask: Any = None,
    ):
        tx = optax.adamw(lr, b1, b2, eps, weight_decay=weight_decay, mask=mask)
        super().__init__(tx, name="adamw")


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """optax.clip_by_global_norm: if the norm of all of ``grads`` together exceeds
    ``max_norm``, scale them all by ``max_norm / norm``. Same structure as ``grads``."""
    clip = optax.clip_by_global_norm(max_norm)
    return from_jax(lambda g: clip.update(g, clip.init(g))[0], name="clip_by_global_norm")(grads)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_by_global_norm", "from_optax"]
