"""Tensor types: a static shape and a numpy dtype, printed as ``f32[3,4]``; and the axes of a
device mesh, printed as ``data=4, model=2``."""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import ml_dtypes
import numpy as np

from .errors import DTypeError, ShapeError

bfloat16 = np.dtype(ml_dtypes.bfloat16)

# Short names used by the IR text; the order is the order of the docs.
DTYPE_NAMES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "i8": np.dtype(np.int8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "u8": np.dtype(np.uint8),
    "u32": np.dtype(np.uint32),
    "u64": np.dtype(np.uint64),
    "f16": np.dtype(np.float16),
    "bf16": bfloat16,
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
}
_SHORT_NAME = {dt: name for name, dt in DTYPE_NAMES.items()}

FLOAT_DTYPES = tuple(DTYPE_NAMES[n] for n in ("f16", "bf16", "f32", "f64"))
SINT_DTYPES = tuple(DTYPE_NAMES[n] for n in ("i8", "i16", "i32", "i64"))
UINT_DTYPES = tuple(DTYPE_NAMES[n] for n in ("u8", "u32", "u64"))
INT_DTYPES = SINT_DTYPES + UINT_DTYPES
BOOL = DTYPE_NAMES["bool"]
NUMERIC_DTYPES = INT_DTYPES + FLOAT_DTYPES
ALL_DTYPES = (BOOL,) + NUMERIC_DTYPES


def dtype_name(dtype: np.dtype) -> str:
    """The IR's short name of a dtype (``f32``)."""
    return _SHORT_NAME[np.dtype(dtype)]


def is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype) in FLOAT_DTYPES


def is_int(dtype: np.dtype) -> bool:
    return np.dtype(dtype) in INT_DTYPES


MAX_SIZE = 2**63 - 1  # the elements a tensor may have (sizes are int64 in numpy and XLA)
MAX_RANK = 64  # the dimensions a tensor may have: numpy's limit (NPY_MAXDIMS)


# (shape, dtype) of the types made so far -> the shape as ints: a graph makes the same few
# types over and over, and each is checked once (bounded: cleared when full)
_CHECKED: dict[tuple[tuple[int, ...], np.dtype], tuple[int, ...]] = {}
_CHECKED_MAX = 4096


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: shape (tuple of ints) and dtype (a numpy dtype)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        shape, dtype = self.shape, self.dtype
        if type(shape) is tuple and isinstance(dtype, np.dtype):  # (seen before: checked)
            try:
                canonical = _CHECKED.get((shape, dtype))
            except TypeError:  # (an unhashable dimension: a numpy array)
                canonical = None
            if canonical is not None:
                object.__setattr__(self, "shape", canonical)  # (numpy ints become ints)
                return
        self._check()
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[(self.shape, self.dtype)] = self.shape

    def _check(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if len(self.shape) > MAX_RANK:  # (before the element count, whose cost grows with it)
            raise ShapeError(
                f"the shape has {len(self.shape)} dimensions; a tensor has at most {MAX_RANK}"
            )
        try:
            object.__setattr__(self, "dtype", np.dtype(self.dtype))
        except TypeError:
            raise DTypeError(f"{self.dtype!r} is not a dtype") from None
        if self.dtype not in _SHORT_NAME:
            raise DTypeError(
                f"flowjit does not support dtype {self.dtype}; use one of {', '.join(DTYPE_NAMES)}"
            )
        if any(d < 0 for d in self.shape):
            raise ShapeError(f"negative dimension in shape {self.shape}")
        if any(d > MAX_SIZE for d in self.shape) or math.prod(self.shape) > MAX_SIZE:
            raise ShapeError(f"shape {self.shape} is too large: at most 2**63 - 1 elements")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{dtype_name(self.dtype)}[{','.join(map(str, self.shape))}]"


_AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class MeshAxes:
    """A device mesh as the IR knows it: its axes' names and sizes, in order (which devices
    form it is the runtime's business). A ``with_sharding`` op's ``mesh`` attribute, and the
    placement (``Op.device``) of a cluster that runs SPMD over the mesh."""

    axes: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, text: str) -> "MeshAxes":
        """The mesh ``text`` names (``data=4, model=2``); a ShapeError if it is malformed."""
        axes = []
        for part in text.split(","):
            name, eq, size = part.strip().partition("=")
            # (short digit strings only: int() refuses thousands of digits with a ValueError)
            if not (
                eq
                and _AXIS_NAME.fullmatch(name)
                and size.isascii()
                and size.isdigit()
                and len(size) <= 9
                and int(size)
            ):
                raise ShapeError(f'malformed mesh {text!r}; expected "name=size, ..."')
            axes.append((name, int(size)))
        return cls(tuple(axes))

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.axes)

    def __str__(self) -> str:
        return ", ".join(f"{name}={size}" for name, size in self.axes)


class JaxModule:
    """A jax computation a ``jax_call`` op holds: a jax function exported by ``jax.export``
    (StableHLO for every platform, with its VJPs up to ``MAX_DERIVATIVE``), as bytes. The IR
    never looks inside; the text form prints it as base64, and the backends load it through
    jax. Compared by identity: the bytes may be made only when first asked for.

    ``data`` is the bytes, or a function that makes them; ``loaded`` is for the backend that
    runs it (the loaded jax object, kept so that it is loaded once)."""

    MAX_DERIVATIVE = 2  # VJPs of VJPs the bytes hold: second-order gradients

    def __init__(self, data: bytes | Callable[[], bytes], loaded: Any = None):
        self._data, self.loaded = data, loaded

    @property
    def data(self) -> bytes:
        if callable(self._data):
            self._data = self._data()
        return self._data

    @classmethod
    def parse(cls, text: str) -> "JaxModule":
        """The module ``text`` (base64, as ``str`` gives it) holds; a ValueError if it is not
        base64."""
        try:
            return cls(base64.b64decode(text.encode("ascii"), validate=True))
        except (ValueError, UnicodeEncodeError) as err:
            raise ValueError(f"a jax module is base64 text: {err}") from None

    def __str__(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def __repr__(self) -> str:
        made = "not made yet" if callable(self._data) else f"{len(self._data)} bytes"
        return f"JaxModule({made})"
