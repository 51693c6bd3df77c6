"""``fj.nn.ScanLayers``: ``length`` copies of one layer whose variables are stacked along a new
leading axis and run by ``fj.scan`` (flax's ``nn.scan`` over layers): the program holds the
layer once, however deep the model, so it traces and compiles in the time of one layer.

``ScanLayers(make_layer, length)`` calls ``make_layer()`` ``length`` times (each layer made
eagerly, so it must know its input size) and stacks each variable's values:
the model's ``blocks/attn/query/kernel`` is ``[length, *kernel's shape]``, with the logical axis
``"layers"`` first. The first layer stays as the template whose code runs in the scan body,
with its variables bound to one slice of the stacked ones. With ``remat`` the body is
rematerialized in the backward pass (``fj.scan(remat=True)``). ``per_layer=`` (a list of one
dict of keyword arguments per layer, as KV caches are) runs the layers one after another
instead, each on its own slice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from flowjit.ir import ArgumentError

from .control_flow import scan
from .location import user_location
from .module import Module, rules_sharding
from .variable import Variable


def _slots(value: Any) -> Iterator[tuple[Any, Any, Variable]]:
    """(container, key, variable) for every Variable under ``value``, in walk order."""
    if isinstance(value, Module):
        items = [(k, v) for k, v in vars(value).items() if not k.startswith("_")]
    elif isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return
    for key, child in items:
        if isinstance(child, Variable):
            yield value, key, child
        else:
            yield from _slots(child)


def _put(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, Module):
        object.__setattr__(container, key, value)
    else:
        container[key] = value


@contextlib.contextmanager
def _bound(slots: Sequence[tuple[Any, Any, Variable]], values: Sequence[Any]) -> Iterator[None]:
    """The template's variables replaced by ``values`` (one layer's slices) while inside."""
    try:
        for (container, key, _), value in zip(slots, values):
            _put(container, key, value)
        yield
    finally:
        for container, key, variable in slots:
            _put(container, key, variable)


class ScanLayers(Module):
    """``length`` layers made by ``make_layer()``, their variables stacked (module
    docstring); ``layers(x, *args, **kwargs)`` runs ``x = layer_i(x, *args, **kwargs)`` for
    i = 0 .. length - 1 (the same ``args`` for each)."""

    def __init__(
        self,
        make_layer: Callable[[], Module],
        length: int,
        *,
        remat: bool = False,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if int(length) < 1:
            raise ArgumentError(f"ScanLayers needs length >= 1, got {length}", loc=user_location())
        layers = [make_layer() for _ in range(int(length))]
        if not all(isinstance(layer, Module) for layer in layers):
            raise ArgumentError(
                "ScanLayers: make_layer() must return an fj.Module", loc=user_location()
            )
        per_layer = [layer.named_variables() for layer in layers]
        paths = list(per_layer[0])
        if not paths:
            raise ArgumentError(
                "ScanLayers: the layer make_layer() returns has no variables yet; stacked "
                "layers make theirs at once (give them their input sizes, in_features=...)",
                loc=user_location(),
            )
        for i, found in enumerate(per_layer[1:], 1):
            shapes = {p: (v.shape, v.dtype) for p, v in found.items()}
            if shapes != {p: (v.shape, v.dtype) for p, v in per_layer[0].items()}:
                raise ArgumentError(
                    f"ScanLayers: layer {i} has other variables than layer 0 ({sorted(shapes)} "
                    f"against {paths}); make_layer() must make layers of one structure, with "
                    "their variables made at once (give the input sizes)",
                    loc=user_location(),
                )
        self.remat = bool(remat)
        self._template = layers[0]
        self._slots = list(_slots(layers[0]))
        if [v for _, _, v in self._slots] != list(per_layer[0].values()):
            raise ArgumentError(
                "ScanLayers: the layer holds a variable twice or in a tuple; stacked layers "
                "need each variable once, in modules, lists or dicts",
                loc=user_location(),
            )
        stacked = {}
        for path in paths:
            first = per_layer[0][path]
            axes = first.axes
            axes = None if axes is None else ("layers", *axes)
            variable = Variable(
                np.stack([np.asarray(found[path].value) for found in per_layer]),
                name=path,
                trainable=first.trainable,
                sharding=rules_sharding(axes),
            )
            variable.axes, variable._path_named = axes, True
            stacked[path] = variable
        self._stacked = stacked  # (the module's children: _holds)

    def _holds(self) -> list[tuple[str, Any]]:
        return list(self._stacked.items())

    @property
    def layer(self) -> Module:
        """The template layer (its own variables are layer 0's initial values, unused)."""
        return self._template

    @property
    def length(self) -> int:
        return next(iter(self._stacked.values())).shape[0]

    def __call__(
        self, x: Any, *args: Any, per_layer: Sequence[dict] | None = None, **kwargs: Any
    ) -> Any:
        variables = list(self._stacked.values())
        if per_layer is not None:
            if len(per_layer) != self.length:
                raise ArgumentError(
                    f"ScanLayers: per_layer has {len(per_layer)} entries for {self.length} layers",
                    loc=user_location(),
                )
            for i, extra in enumerate(per_layer):
                with _bound(self._slots, [v[i] for v in variables]):
                    x = self._template(x, *args, **kwargs, **extra)
            return x

        def body(carry: Any, slices: list[Any]) -> tuple[Any, None]:
            with _bound(self._slots, slices):
                return self._template(carry, *args, **kwargs), None

        out, _ = scan(body, x, [v.read() for v in variables], remat=self.remat)
        return out


__all__ = ["ScanLayers"]
