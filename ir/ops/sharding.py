"""Sharding: ``with_sharding`` says how a value is laid out over a device mesh when the
program runs SPMD (``fj.compile(mesh=...)``); its value is its operand's.

``mesh`` is the mesh's axes and sizes (an ``ir.MeshAxes``); ``spec`` is text, in Shardy's
notation without quotes, giving each dimension the mesh axes it is split over (``{}``: not
split). Both print as text:

    %3: f32[128,512] = with_sharding(%2) {mesh="data=4, model=2", spec="[{data}, {}]"}

The XLA backend lowers it to ``sdy.sharding_constraint``; XLA's SPMD partitioner (Shardy) then
splits the program and inserts the collectives."""

from __future__ import annotations

import math
import re
from typing import Sequence

from ..core import OpDef, register
from ..errors import ShapeError
from ..types import MeshAxes

Spec = tuple[tuple[str, ...], ...]  # per dimension, the mesh axes it is split over


def spec_text(spec: Spec) -> str:
    return "[" + ", ".join("{" + ", ".join(dim) + "}" for dim in spec) + "]"


def parse_spec(text: str) -> Spec:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ShapeError(f'malformed sharding spec {text!r}; expected "[{{axis, ...}}, ...]"')
    inner = text[1:-1].strip()
    dims = re.findall(r"\{([^{}]*)\}", inner)
    if re.sub(r"\{[^{}]*\}", "", inner).replace(",", "").strip():
        raise ShapeError(f'malformed sharding spec {text!r}; expected "[{{axis, ...}}, ...]"')
    return tuple(tuple(a.strip() for a in d.split(",") if a.strip()) for d in dims)


def check_spec(shape: Sequence[int], mesh: MeshAxes, spec: Spec) -> None:
    """ShapeError unless ``spec`` fits a value of ``shape`` on the mesh ``axes``: one entry per
    dimension, axes of the mesh each used once, each dimension divisible by its axes' sizes."""
    sizes = mesh.sizes
    if len(spec) != len(shape):
        raise ShapeError(
            f"the spec {spec_text(spec)} has {len(spec)} entries for rank {len(shape)}"
        )
    used = [a for dim in spec for a in dim]
    for axis in used:
        if axis not in sizes:
            raise ShapeError(f"axis {axis!r} is not in the mesh ({mesh})")
    if len(set(used)) != len(used):
        raise ShapeError(f"the spec {spec_text(spec)} uses a mesh axis twice")
    for d, (size, dim) in enumerate(zip(shape, spec)):
        parts = math.prod(sizes[a] for a in dim)
        if size % parts:
            raise ShapeError(
                f"dimension {d} of size {size} is not divisible by {parts} (mesh axes "
                f"{', '.join(dim)})"
            )


def _with_sharding_rule(types, mesh: MeshAxes, spec: str):
    if len(types) != 1:
        raise ShapeError(f"with_sharding takes one value, got {len(types)}")
    check_spec(types[0].shape, mesh, parse_spec(spec))
    return types[0]


with_sharding = register(
    OpDef(
        "with_sharding",
        _with_sharding_rule,
        lambda x, mesh, spec: x,
        attrs={"mesh": "mesh", "spec": "str"},
        doc="x, laid out over the device mesh as spec says",
    )
)


@with_sharding.defvjp
def _with_sharding_vjp(emit, op, g):  # the cotangent is laid out as the value
    return [emit(with_sharding, g, **op.attrs)]


@with_sharding.defbatch
def _with_sharding_batch(e, op, args, batched):  # the batch axis is not split over the mesh
    spec = spec_text([(), *parse_spec(op.attrs["spec"])])
    return [e(with_sharding, args[0], mesh=op.attrs["mesh"], spec=spec)], [True]


__all__ = ["check_spec", "parse_spec", "spec_text", "with_sharding"]
