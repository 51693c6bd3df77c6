"""``fj.nn.Conv`` and ``fj.nn.ConvTranspose`` (API.md, 12): ``flax.linen.Conv`` and
``flax.linen.ConvTranspose`` as ``fj.Module``s, with flax's arguments, semantics and parameter
layout, so a flax model's parameters copy into them one for one.

- Inputs are channels-last, ``(*batch, *spatial, features)``: any number of leading batch
  dimensions (flattened into one for the convolution, as flax does), or none.
- ``kernel`` has shape ``kernel_size + (in_features // feature_group_count, features)``
  (``ConvTranspose(transpose_kernel=True)``: ``kernel_size + (features, in_features)``), ``bias``
  ``(features,)``. Both are made eagerly when ``in_features`` is given, else on the first call,
  from the input's last dimension (once, even where that call is being traced by ``fj.compile``).
- ``kernel_init`` and ``bias_init`` are jax initializers (flax's defaults: LeCun normal, zeros)
  or values, as ``Module.param`` takes them; ``kernel_axes`` names the kernel's logical axes
  (the bias takes the last).
- Dtypes as flax's ``promote_dtype``: with ``dtype=None`` the input, kernel and bias are cast to
  their promoted (float) dtype; otherwise all three are cast to ``dtype``.

Lowering: a 1-d or 2-d convolution is flowjit's own ``conv2d`` op (a 1-d one with a unit spatial
dimension added), so the IR stays native and its gradient is flowjit's; a 3-d (or n-d) one is
``jax.lax.conv_general_dilated`` through ``fj.from_jax`` (one ``jax_call`` op, which jax
differentiates). A transposed convolution is a convolution of the input dilated by the strides.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir.errors import ArgumentError, ShapeError
from flowjit.ir.ops import nn as N

from . import numpy_api as fnp
from . import numpy_linalg as fla
from .dtypes import canonical_dtype, float_dtype, result_dtype
from .from_jax import from_jax
from .location import check_int, user_location
from .module import Module, key_stream
from .nn_api import _same_padding
from .trace import emit

Pads = tuple[tuple[int, int], ...]

# flax.linen's defaults: default_kernel_init and initializers.zeros_init()
default_kernel_init = jax.nn.initializers.lecun_normal()
zeros_init = jax.nn.initializers.zeros


def conv_general(x, w, strides, pads: Pads, lhs_dilation, rhs_dilation, groups: int = 1):
    """``jax.lax.conv_general_dilated`` of channels-last ``x`` ``(N, *spatial, C)`` with ``w``
    ``(*window, C // groups, O)`` and explicit ``pads`` ((low, high) per spatial dim): the native
    ``conv2d`` op for 1 or 2 spatial dims, jax's convolution through ``from_jax`` otherwise."""
    rank = w.ndim - 2
    if rank > 2:
        spec = (0, rank + 1, *range(1, rank + 1))
        numbers = jax.lax.ConvDimensionNumbers(spec, (rank + 1, rank, *range(rank)), spec)
        # (flowjit's conv2d always computes at the highest precision; so does this one)
        return from_jax(jax.lax.conv_general_dilated, name=f"conv{rank}d")(
            x,
            w,
            window_strides=tuple(strides),
            padding=tuple(pads),
            lhs_dilation=tuple(lhs_dilation),
            rhs_dilation=tuple(rhs_dilation),
            dimension_numbers=numbers,
            feature_group_count=groups,
            precision=jax.lax.Precision.HIGHEST,
        )
    if rank == 1:  # as 2-d with a unit H: (N, L, C) -> (N, 1, L, C), (k, I, O) -> (1, k, I, O)
        y = conv_general(
            fnp.expand_dims(x, 1),
            fnp.expand_dims(w, 0),
            (1, *strides),
            ((0, 0), *pads),
            (1, *lhs_dilation),
            (1, *rhs_dilation),
            groups,
        )
        return fnp.squeeze(y, 1)
    return emit(
        N.conv2d,
        [x, w],
        strides=tuple(strides),
        padding=tuple(p for pair in pads for p in pair),
        lhs_dilation=tuple(lhs_dilation),
        rhs_dilation=tuple(rhs_dilation),
        feature_group_count=groups,
    )


class _ConvBase(Module, abc.ABC):
    """What Conv and ConvTranspose share: arguments, parameters, batch dimensions, dtypes and
    the bias. A subclass says which paddings it takes, the kernel's shape, and the convolution
    of a (N, *spatial, C) input (``_convolve``)."""

    PADDINGS: tuple[str, ...] = ()

    def __init__(
        self,
        features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None,
        padding: Any,
        kernel_dilation: int | Sequence[int] | None,
        use_bias: bool,
        *,
        in_features: int | None,
        dtype: Any,
        param_dtype: Any,
        kernel_init: Callable[..., Any],
        bias_init: Callable[..., Any],
        kernel_axes: Sequence[str | None] | None,
        rng: Any,
        name: str | None,
    ):
        super().__init__(name=name)
        what = type(self).__name__
        self._what = what
        self.features = check_int(features, f"{what}: features", minimum=1)
        self.kernel_size = _ints(kernel_size, f"{what}: kernel_size", None)
        rank = len(self.kernel_size)
        self.strides = _ints(strides, f"{what}: strides", rank)
        self.kernel_dilation = _ints(kernel_dilation, f"{what}: kernel_dilation", rank)
        self.padding = self._padding(padding)
        self.use_bias = bool(use_bias)
        self.dtype = None if dtype is None else canonical_dtype(dtype)
        self.param_dtype = canonical_dtype(param_dtype)
        self.kernel_init, self.bias_init = kernel_init, bias_init
        if kernel_axes is not None and len(kernel_axes) != rank + 2:
            raise ArgumentError(
                f"{what}: kernel_axes {tuple(kernel_axes)} name {len(kernel_axes)} dimensions; "
                f"the kernel has {rank + 2} ({rank} spatial, in-features, features)",
                loc=user_location(),
            )
        self.kernel_axes = None if kernel_axes is None else tuple(kernel_axes)
        self.rng = key_stream(rng, what)  # (kernel and bias draw its successive keys)
        self.in_features: int | None = None
        self.kernel = None
        self.bias = None
        self._check_arguments()
        if in_features is not None:
            self._build(check_int(in_features, f"{what}: in_features", minimum=1))

    # -- arguments ----------------------------------------------------------------------------
    def _check_arguments(self) -> None:
        """A subclass's checks of its own arguments (run before the parameters are made)."""

    def _padding(self, padding: Any) -> str | Pads:
        """A padding mode among ``PADDINGS``, or (low, high) per spatial dim, from flax's forms:
        an int (both sides of every dim), or one int or (low, high) pair per spatial dim."""
        rank = len(self.kernel_size)
        if isinstance(padding, str):
            if padding.upper() in self.PADDINGS:
                return padding.upper()
        elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            return ((int(padding), int(padding)),) * rank
        elif isinstance(padding, Sequence) and len(padding) == rank:
            pads = [(p, p) if isinstance(p, (int, np.integer)) else p for p in padding]
            if all(
                isinstance(p, Sequence)
                and len(p) == 2
                and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in p)
                for p in pads
            ):
                return tuple((int(lo), int(hi)) for lo, hi in pads)
        modes = ", ".join(repr(p) for p in self.PADDINGS)
        raise ArgumentError(
            f"{self._what}: padding must be one of {modes}, an int, or one int or (low, high) "
            f"pair per spatial dim ({rank} here), got {padding!r}",
            loc=user_location(),
        )

    # -- parameters ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _kernel_shape(self, in_features: int) -> tuple[int, ...]:
        """The kernel's shape for inputs of ``in_features`` features (each subclass's)."""

    def _build(self, in_features: int) -> None:
        """Make ``kernel`` (and ``bias``) for inputs of ``in_features`` features."""
        made = [("kernel", self.kernel_init, self._kernel_shape(in_features), self.kernel_axes)]
        if self.use_bias:
            axes = None if self.kernel_axes is None else self.kernel_axes[-1:]
            made.append(("bias", self.bias_init, (self.features,), axes))
        for attr, init, shape, axes in made:
            self.param(attr, init, shape, self.param_dtype, axes=axes)
        self.in_features = in_features

    # -- the call ------------------------------------------------------------------------------
    def __call__(self, inputs: Any) -> Any:
        """The convolution of ``inputs`` ``(*batch, *spatial, in_features)``; batch dims may be
        any number, or none."""
        x = fnp.asarray(inputs)
        rank = len(self.kernel_size)
        if x.ndim < rank + 1:
            raise ShapeError(
                f"{self._what} with a {rank}-d kernel_size {self.kernel_size} takes inputs "
                f"(*batch, {rank} spatial dims, features), of rank >= {rank + 1}; got shape "
                f"{x.shape}",
                loc=user_location(),
            )
        if self.kernel is None:
            self._build(x.shape[-1])
        elif x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{self._what} {self.path or self.name!r} was built for {self.in_features} input "
                f"features; got an input of shape {x.shape} ({x.shape[-1]} features)",
                loc=user_location(),
            )
        batch = x.shape[: x.ndim - rank - 1]
        if len(batch) != 1:  # one leading batch dim for the convolution, as flax
            x = fnp.reshape(x, (math.prod(batch), *x.shape[len(batch) :]))
        params = [v.read() for v in (self.kernel, self.bias) if v is not None]
        dtype = float_dtype(result_dtype(x, *params)) if self.dtype is None else self.dtype
        x, kernel, *bias = (fnp.astype(v, dtype) for v in (x, *params))
        y = self._convolve(x, kernel)
        if bias:
            y = y + bias[0]
        return y if len(batch) == 1 else fnp.reshape(y, (*batch, *y.shape[1:]))

    @abc.abstractmethod
    def _convolve(self, x: Any, kernel: Any) -> Any:
        """The convolution of ``x`` (batch folded into one dim) with ``kernel``."""


class Conv(_ConvBase):
    """``flax.linen.Conv`` (module docstring): a convolution with ``features`` filters of
    ``kernel_size`` (1, 2 or 3 ints: a 1-d, 2-d or 3-d convolution), ``strides``, ``padding``
    ('SAME', 'VALID', 'CIRCULAR', 'REFLECT', 'CAUSAL' (1-d), an int, or one int or (low, high)
    pair per spatial dim), ``input_dilation``, ``kernel_dilation`` and
    ``feature_group_count``."""

    PADDINGS = ("SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL")

    def __init__(
        self,
        features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = 1,
        padding: Any = "SAME",
        input_dilation: int | Sequence[int] | None = 1,
        kernel_dilation: int | Sequence[int] | None = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        *,
        in_features: int | None = None,
        dtype: Any = None,
        param_dtype: Any = np.float32,
        kernel_init: Callable[..., Any] = default_kernel_init,
        bias_init: Callable[..., Any] = zeros_init,
        kernel_axes: Sequence[str | None] | None = None,
        rng: Any = None,
        name: str | None = None,
    ):
        self.input_dilation = input_dilation
        self.feature_group_count = feature_group_count
        super().__init__(
            features,
            kernel_size,
            strides,
            padding,
            kernel_dilation,
            use_bias,
            in_features=in_features,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            bias_init=bias_init,
            kernel_axes=kernel_axes,
            rng=rng,
            name=name,
        )

    def _check_arguments(self) -> None:
        what, rank = self._what, len(self.kernel_size)
        self.input_dilation = _ints(self.input_dilation, f"{what}: input_dilation", rank)
        groups = check_int(self.feature_group_count, f"{what}: feature_group_count", minimum=1)
        self.feature_group_count = groups
        if self.features % groups:
            raise ArgumentError(
                f"{what}: features={self.features} must be divisible by "
                f"feature_group_count={groups} (each group makes features // groups of them)",
                loc=user_location(),
            )
        if self.padding == "CAUSAL" and rank != 1:
            raise ArgumentError(
                f"{what}: padding='CAUSAL' is for 1-d convolutions; kernel_size "
                f"{self.kernel_size} has {rank} spatial dims. Give (low, high) pairs instead",
                loc=user_location(),
            )
        if isinstance(self.padding, str) and any(d != 1 for d in self.input_dilation):
            raise ArgumentError(
                f"{what}: input_dilation {self.input_dilation} needs explicit padding, one "
                f"(low, high) pair per spatial dim, not {self.padding!r} (as jax's "
                "conv_general_dilated)",
                loc=user_location(),
            )

    def _kernel_shape(self, in_features: int) -> tuple[int, ...]:
        groups = self.feature_group_count
        if in_features % groups:
            raise ShapeError(
                f"{self._what}: in_features={in_features} must be divisible by "
                f"feature_group_count={groups}",
                loc=user_location(),
            )
        return (*self.kernel_size, in_features // groups, self.features)

    def _convolve(self, x: Any, kernel: Any) -> Any:
        window = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation)]
        padding = self.padding
        if padding in ("CIRCULAR", "REFLECT"):
            # pad the input periodically (reflected) with the SAME-sized halo, as flax
            mode = "wrap" if padding == "CIRCULAR" else "reflect"
            for axis, w in enumerate(window, start=1):
                index = np.pad(np.arange(x.shape[axis]), ((w - 1) // 2, w // 2), mode=mode)
                x = fla.take(x, index, axis=axis)
            padding = "VALID"
        if padding == "CAUSAL":
            pads: Pads = ((window[0] - 1, 0),)
        elif padding == "SAME":
            pads = tuple(
                _same_padding(size, w, s) for size, w, s in zip(x.shape[1:-1], window, self.strides)
            )
        elif padding == "VALID":
            pads = ((0, 0),) * len(window)
        else:
            pads = padding
        return conv_general(
            x,
            kernel,
            self.strides,
            pads,
            self.input_dilation,
            self.kernel_dilation,
            self.feature_group_count,
        )


class ConvTranspose(_ConvBase):
    """``flax.linen.ConvTranspose`` (module docstring), ``jax.lax.conv_transpose``'s
    convolution: ``features`` filters of ``kernel_size`` over the input dilated by ``strides``;
    ``padding`` 'SAME', 'VALID' and 'CIRCULAR' are the forward convolution's, explicit
    (low, high) pairs pad the dilated input. ``transpose_kernel=True`` flips the kernel's
    window and swaps its in- and out-features axes (the gradient of a ``Conv``)."""

    PADDINGS = ("SAME", "VALID", "CIRCULAR")

    def __init__(
        self,
        features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = 1,
        padding: Any = "SAME",
        kernel_dilation: int | Sequence[int] | None = 1,
        use_bias: bool = True,
        transpose_kernel: bool = False,
        *,
        in_features: int | None = None,
        dtype: Any = None,
        param_dtype: Any = np.float32,
        kernel_init: Callable[..., Any] = default_kernel_init,
        bias_init: Callable[..., Any] = zeros_init,
        kernel_axes: Sequence[str | None] | None = None,
        rng: Any = None,
        name: str | None = None,
    ):
        self.transpose_kernel = bool(transpose_kernel)
        super().__init__(
            features,
            kernel_size,
            strides,
            padding,
            kernel_dilation,
            use_bias,
            in_features=in_features,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            bias_init=bias_init,
            kernel_axes=kernel_axes,
            rng=rng,
            name=name,
        )

    def _kernel_shape(self, in_features: int) -> tuple[int, ...]:
        if self.transpose_kernel:
            return (*self.kernel_size, self.features, in_features)
        return (*self.kernel_size, in_features, self.features)

    def _convolve(self, x: Any, kernel: Any) -> Any:
        rank = len(self.kernel_size)
        if self.transpose_kernel:
            perm = (*range(rank), rank + 1, rank)
            kernel = fnp.transpose(fnp.flip(kernel, tuple(range(rank))), perm)
        window = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.kernel_dilation)]
        if isinstance(self.padding, str):
            mode = "VALID" if self.padding == "CIRCULAR" else self.padding
            pads = tuple(_transpose_padding(w, s, mode) for w, s in zip(window, self.strides))
        else:
            pads = self.padding
        y = conv_general(x, kernel, (1,) * rank, pads, self.strides, self.kernel_dilation)
        if self.padding == "CIRCULAR":
            y = self._wrap(y, [n * s for n, s in zip(x.shape[1:-1], self.strides)])
        return y

    def _wrap(self, y: Any, periods: list[int]) -> Any:
        """flax's circular ConvTranspose: each spatial dim of ``y`` padded to a whole number of
        ``periods`` (the input's size times the stride) and folded onto one period by summing."""
        for axis, period in enumerate(periods, start=1):
            extra = -(y.shape[axis] - period) % (2 * period)
            # (the odd cell on the right with a transposed kernel, mirroring Conv's; else left)
            low = extra // 2 if self.transpose_kernel else (extra + 1) // 2
            widths = [(0, 0)] * y.ndim
            widths[axis] = (low, extra - low)
            y = fnp.pad(y, widths)
            folded = (*y.shape[:axis], -1, period, *y.shape[axis + 1 :])
            y = fnp.sum(fnp.reshape(y, folded), axis=axis)
        return y


def _ints(value: Any, what: str, rank: int | None) -> tuple[int, ...]:
    """``value`` as ``rank`` ints >= 1 (an int, or None, broadcast as flax's), or, for a kernel
    size (``rank`` None), a non-empty sequence of ints >= 1; ``what`` names it in errors."""
    if value is None and rank is not None:
        value = 1
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * (rank or 1)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or (rank is not None and len(value) != rank)
    ):
        wanted = "one per spatial dim" if rank is None else f"{rank}, one per spatial dim"
        raise ArgumentError(
            f"{what} must be an int or a sequence of ints ({wanted}), got {value!r}",
            loc=user_location(),
        )
    return tuple(check_int(v, what, minimum=1) for v in value)


def _transpose_padding(window: int, stride: int, padding: str) -> tuple[int, int]:
    """jax's ``_conv_transpose_padding``: the (low, high) padding of the stride-dilated input
    that makes ``conv_transpose`` the transpose of a ``padding`` convolution."""
    if padding == "SAME":
        total = window + stride - 2
        low = window - 1 if stride > window - 1 else -(-total // 2)
    else:  # VALID
        total = window + stride - 2 + max(window - stride, 0)
        low = window - 1
    return low, total - low


__all__ = ["Conv", "ConvTranspose", "conv_general"]
