"""``fj.optim``: first-order optimizers with optax's update rules (API.md, section 4).

``opt.apply(grads, variables)`` inside a compiled function writes the new values into the
Variables. Slot variables (momentum, Adam's moments and step count) are fj.Variables the
optimizer creates the first time it updates a variable (so while the function is first
traced) and reuses afterwards. ``opt.minimize(loss_fn, variables)`` takes the gradients of
``loss_fn()`` with respect to the variables and applies them. Outside a compiled function
``apply`` compiles itself."""

from __future__ import annotations

import abc
from typing import Any, Callable, Sequence

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import ShapeError

from .autodiff import gradients
from .location import user_location
from .trace import tracing
from .variable import Variable


def _leaves(tree: Any) -> tuple[list[Any], Any]:
    return jax.tree_util.tree_flatten(tree, is_leaf=lambda x: isinstance(x, Variable))


class Optimizer(abc.ABC):
    """Base class: subclasses define ``_slots(variable)`` (name -> initial value) and
    ``_update(variable, grad, slots) -> new value``, reading and writing the slots."""

    def __init__(self, lr: float):
        self.lr = lr
        self._state: dict[Variable, dict[str, Variable]] = {}
        self._eager: dict[tuple[int, ...], Callable] = {}

    def slots(self, variable: Variable) -> dict[str, Variable]:
        """The slot variables of ``variable``, created (once) on first use."""
        state = self._state.get(variable)
        if state is None:
            state = {
                name: Variable(
                    value,
                    name=f"{variable.name or 'var'}/{name}",
                    trainable=False,
                    # a slot shaped as its variable is laid out as it is (sharded with it)
                    sharding=variable.sharding if np.shape(value) == variable.shape else None,
                )
                for name, value in self._slots(variable).items()
            }
            self._state[variable] = state
        return state

    def apply(self, grads: Any, variables: Any) -> None:
        """Update each Variable of ``variables`` (a Variable, a list or any pytree of them)
        with its gradient in ``grads`` (the same structure, e.g. from ``fj.gradients``)."""
        grad_leaves, _ = _leaves(grads)
        var_leaves, _ = _leaves(variables)
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

                step = compile(lambda gs: self._apply(gs, var_leaves), name="optim_apply")
                self._eager[key] = step
            step(list(grad_leaves))
            return
        self._apply(grad_leaves, var_leaves)

    def _apply(self, grads: Sequence[Any], variables: Sequence[Variable]) -> None:
        from .numpy_api import asarray

        for v, g in zip(variables, grads):
            g = asarray(g)
            if g.shape != v.shape:
                raise ShapeError(
                    f"the gradient of variable {v.name!r} has shape {g.shape}; the variable "
                    f"has shape {v.shape}",
                    op="optim.apply",
                    loc=user_location(),
                )
            v.assign(self._update(v, g.astype(v.dtype), self.slots(v)))

    def minimize(self, loss_fn: Callable[[], Any], variables: Any) -> Any:
        """``loss = loss_fn()``; apply its gradients with respect to ``variables``; return
        the loss (inside a compiled function)."""
        var_leaves, _ = _leaves(variables)
        loss = loss_fn()
        self.apply(gradients(loss, var_leaves), var_leaves)
        return loss

    @abc.abstractmethod
    def _slots(self, variable: Variable) -> dict[str, np.ndarray]:
        """Initial values of the slot variables ``variable`` needs (name -> array)."""

    @abc.abstractmethod
    def _update(self, variable: Variable, grad: Any, slots: dict[str, Variable]) -> Any:
        """The variable's new value; assigns the slots' new values."""


def _zeros_like(variable: Variable) -> np.ndarray:
    return np.zeros(variable.shape, variable.dtype)


class SGD(Optimizer):
    """optax.sgd: ``trace = g + momentum * trace``; the update is ``trace`` (``g + momentum
    * trace`` with ``nesterov``); ``w -= lr * update``. No slot without momentum."""

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(lr)
        self.momentum, self.nesterov = momentum, nesterov

    def _slots(self, variable):
        return {"momentum": _zeros_like(variable)} if self.momentum else {}

    def _update(self, variable, grad, slots):
        update = grad
        if self.momentum:
            trace = grad + slots["momentum"] * self.momentum
            slots["momentum"].assign(trace)
            update = grad + trace * self.momentum if self.nesterov else trace
        return variable - update * self.lr


class Adam(Optimizer):
    """optax.adam: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, bias-corrected by
    the step count t (from 1): ``w -= lr * m_hat / (sqrt(v_hat) + eps)``."""

    weight_decay = 0.0

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.b1, self.b2, self.eps = b1, b2, eps

    def _slots(self, variable):
        return {
            "m": _zeros_like(variable),
            "v": _zeros_like(variable),
            "count": np.zeros((), np.int32),
        }

    def _update(self, variable, grad, slots):
        from .numpy_api import asarray, power, sqrt

        m = slots["m"] * self.b1 + grad * (1 - self.b1)
        v = slots["v"] * self.b2 + grad * grad * (1 - self.b2)
        count = slots["count"] + 1
        slots["m"].assign(m)
        slots["v"].assign(v)
        slots["count"].assign(count)
        t = count.astype(variable.dtype)
        m_hat = m / (1 - power(asarray(self.b1, variable.dtype), t))
        v_hat = v / (1 - power(asarray(self.b2, variable.dtype), t))
        update = m_hat / (sqrt(v_hat) + self.eps)
        if self.weight_decay:
            update = update + variable * self.weight_decay
        return variable - update * self.lr


class AdamW(Adam):
    """optax.adamw: Adam's update plus ``weight_decay * w`` (decoupled weight decay), all
    times ``lr``."""

    def __init__(
        self,
        lr: float,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        super().__init__(lr, b1, b2, eps)
        self.weight_decay = weight_decay


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """optax.clip_by_global_norm: if the norm of all of ``grads`` together exceeds
    ``max_norm``, scale them all by ``max_norm / norm``. Same structure as ``grads``."""
    from .numpy_api import asarray, sqrt, where

    leaves, treedef = jax.tree_util.tree_flatten(grads)
    leaves = [asarray(g) for g in leaves]
    if not leaves:
        return grads
    total = None
    for g in leaves:
        part = g.astype("float32") if g.dtype.itemsize < 4 else g
        part = (part * part).sum()
        total = part if total is None else total + part.astype(total.dtype)
    norm = sqrt(total)
    small = norm < max_norm
    clipped = [where(small, g, g / norm.astype(g.dtype) * max_norm) for g in leaves]
    return jax.tree_util.tree_unflatten(treedef, clipped)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_by_global_norm"]
