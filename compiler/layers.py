"""``fj.nn``'s layers (API.md, 12): Dense, Embedding, LayerNorm, RMSNorm, MLP and Dropout as
``fj.Module``s, with flax.linen's parameter layout, initializers and results, so a flax model's
weights load into them and give the same values (tests/compiler/test_nn_layers.py says
within what). Attention is in attention.py, convolutions in conv_layers.py.

Mixed precision is flax's: ``param_dtype`` is the variables' dtype (float32 by default) and
``dtype`` the dtype a layer computes in (None: the promoted dtype of its input and
parameters); LayerNorm and RMSNorm compute their statistics in float32 whatever the dtype.
A model in bfloat16 passes ``dtype=jnp.bfloat16`` to its layers and takes its loss in
float32 (``logits.astype(fnp.float32)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import jax.nn.initializers as jinit

from flowjit.ir import ArgumentError, ShapeError

from . import numpy_api as fnp
from .dtypes import result_dtype
from .numpy_linalg import matmul, take
from .location import user_location
from .module import Module, generator, key_stream
from .nn_api import dropout, gelu, layer_norm

F32 = np.dtype(np.float32)

# flax.linen's defaults
default_kernel_init = jinit.lecun_normal()
default_embed_init = jinit.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


def promote(*xs: Any, dtype: Any = None) -> list[Any]:
    """``xs`` as Tensors of one dtype: ``dtype``, else their promoted dtype (flax's
    ``promote_dtype``); None entries stay None."""
    present = [fnp.asarray(x) for x in xs if x is not None]
    target = np.dtype(dtype) if dtype is not None else result_dtype(*present)
    return [None if x is None else fnp.asarray(x).astype(target) for x in xs]


class Layer(Module):
    """What the layers share: the generator their initial values come from, their compute and
    parameter dtypes, and variables made at once or on the first call (when the input's size
    is known)."""

    def __init__(self, *, rng: Any, dtype: Any, param_dtype: Any, name: str | None):
        super().__init__(name=name)
        self.rng = key_stream(rng, type(self).__name__)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.param_dtype = np.dtype(param_dtype)

    def _input_size(self, x: Any, expected: int | None, what: str) -> int:
        size = x.shape[-1] if x.ndim else None
        if size is None or (expected is not None and size != expected):
            raise ShapeError(
                f"{type(self).__name__} {self.path or self.name!r} takes inputs whose last "
                f"dimension ({what}) is {expected}, got shape {tuple(x.shape)}",
                op=type(self).__name__,
                loc=user_location(),
            )
        return size


class Dense(Layer):
    """``y = x @ kernel + bias`` over the last axis of ``x`` (flax.linen.Dense): kernel
    (in_features, features), bias (features,). Made at once when ``in_features`` is given,
    else on the first call. ``kernel_axes`` are the kernel's logical axis names."""

    def __init__(
        self,
        features: int,
        *,
        in_features: int | None = None,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = F32,
        kernel_init: Callable = default_kernel_init,
        bias_init: Callable = jinit.zeros,
        kernel_axes: Sequence[str | None] | None = None,
        rng: Any = None,
        name: str | None = None,
    ):
        super().__init__(rng=rng, dtype=dtype, param_dtype=param_dtype, name=name)
        self.features, self.use_bias = int(features), bool(use_bias)
        self._inits = (kernel_init, bias_init, None if kernel_axes is None else tuple(kernel_axes))
        if in_features is not None:
            self._build(int(in_features))

    def _build(self, in_features: int) -> None:
        kernel_init, bias_init, axes = self._inits
        shape = (in_features, self.features)
        self.param("kernel", kernel_init, shape, self.param_dtype, axes=axes)
        if self.use_bias:
            self.param("bias", bias_init, shape[1:], self.param_dtype, axes=axes and axes[1:])

    def __call__(self, x: Any) -> Any:
        x = fnp.asarray(x)
        if "kernel" not in vars(self):
            self._build(self._input_size(x, None, "in_features"))
        self._input_size(x, self.kernel.shape[0], "in_features")
        bias = self.bias if self.use_bias else None
        x, kernel, bias = promote(x, self.kernel, bias, dtype=self.dtype)
        y = matmul(x, kernel)
        return y if bias is None else y + bias


class Embedding(Layer):
    """A table of ``num_embeddings`` vectors of size ``features`` (flax.linen.Embed):
    ``emb(ids)`` looks rows up (ids out of range are clamped); ``emb.attend(x)`` is ``x @
    table.T``, the output head tied to the embedding."""

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        dtype: Any = None,
        param_dtype: Any = F32,
        embedding_init: Callable = default_embed_init,
        axes: Sequence[str | None] | None = ("vocab", "embed"),
        rng: Any = None,
        name: str | None = None,
    ):
        super().__init__(rng=rng, dtype=dtype, param_dtype=param_dtype, name=name)
        shape = (int(num_embeddings), int(features))
        self.param("embedding", embedding_init, shape, self.param_dtype, axes=axes)

    def __call__(self, ids: Any) -> Any:
        ids = fnp.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise ArgumentError(
                f"Embedding {self.path or self.name!r} looks up integer ids, got "
                f"{ids.dtype}; use .astype(fnp.int32)",
                op="Embedding",
                loc=user_location(),
            )
        (table,) = promote(self.embedding, dtype=self.dtype)
        return take(table, ids, axis=0)

    def attend(self, x: Any) -> Any:
        x, table = promote(x, self.embedding, dtype=self.dtype)
        self._input_size(x, table.shape[1], "features")
        return matmul(x, table.T)


class _Norm(Layer):
    """LayerNorm and RMSNorm: a scale (and a bias) over the last axis, made on the first call
    unless ``features`` is given."""

    def __init__(
        self,
        features,
        epsilon,
        use_scale,
        use_bias,
        scale_init,
        bias_init,
        axes,
        dtype,
        param_dtype,
        name,
    ):
        super().__init__(rng=None, dtype=dtype, param_dtype=param_dtype, name=name)
        self.epsilon, self.use_scale, self.use_bias = float(epsilon), use_scale, use_bias
        self._inits = (scale_init, bias_init, None if axes is None else tuple(axes))
        if features is not None:
            self._build(int(features))

    def _build(self, features: int) -> None:
        scale_init, bias_init, axes = self._inits
        if self.use_scale:
            self.param("scale", scale_init, (features,), self.param_dtype, axes=axes)
        if self.use_bias:
            self.param("bias", bias_init, (features,), self.param_dtype, axes=axes)
        self.features = features

    def _prepare(self, x: Any) -> tuple[Any, Any, Any, np.dtype]:
        """x, the scale and bias (None where absent), and the result's dtype (flax's:
        ``dtype``, else the promoted dtype of x and the parameters)."""
        x = fnp.asarray(x)
        if "features" not in vars(self):
            self._build(self._input_size(x, None, "features"))
        self._input_size(x, self.features, "features")
        scale = self.scale if self.use_scale else None
        bias = self.bias if self.use_bias else None
        present = [p for p in (x, scale, bias) if p is not None]
        out = self.dtype if self.dtype is not None else result_dtype(*present)
        return x, scale, bias, np.dtype(out)


class LayerNorm(_Norm):
    """flax.linen.LayerNorm over the last axis (``epsilon=1e-6``): the mean and variance, and
    the normalization, in float32 (or wider) whatever the dtype; one rounding to the result's
    dtype."""

    def __init__(
        self,
        features: int | None = None,
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        use_bias: bool = True,
        scale_init: Callable = jinit.ones,
        bias_init: Callable = jinit.zeros,
        axes: Sequence[str | None] | None = None,
        dtype: Any = None,
        param_dtype: Any = F32,
        name: str | None = None,
    ):
        super().__init__(
            features,
            epsilon,
            use_scale,
            use_bias,
            scale_init,
            bias_init,
            axes,
            dtype,
            param_dtype,
            name,
        )

    def __call__(self, x: Any) -> Any:
        x, scale, bias, out = self._prepare(x)
        if out.itemsize > x.dtype.itemsize:  # (normalized at the result's width, rounded once)
            x = x.astype(out)
        return layer_norm(x, scale, bias, self.epsilon).astype(out)


class RMSNorm(_Norm):
    """flax.linen.RMSNorm over the last axis: ``x / sqrt(mean(x**2) + epsilon) * scale``,
    computed in float32 (or wider) whatever the dtype."""

    def __init__(
        self,
        features: int | None = None,
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        scale_init: Callable = jinit.ones,
        axes: Sequence[str | None] | None = None,
        dtype: Any = None,
        param_dtype: Any = F32,
        name: str | None = None,
    ):
        super().__init__(
            features, epsilon, use_scale, False, scale_init, None, axes, dtype, param_dtype, name
        )

    def __call__(self, x: Any) -> Any:
        x, scale, _, out = self._prepare(x)
        wide = np.promote_types(x.dtype, F32) if x.dtype.itemsize > 2 else F32
        xw = x.astype(wide)
        y = xw * fnp.rsqrt(fnp.mean(xw * xw, -1, keepdims=True) + self.epsilon)
        if scale is not None:
            y = y * scale.astype(wide)
        return y.astype(out)


class Dropout(Module):
    """Zeroes each element with probability ``rate`` and scales the rest by 1 / (1 - rate),
    the mask drawn from ``rng`` (an ``fj.random.Generator``, whose state advances in program
    order); ``deterministic=True`` (evaluation) passes the input through."""

    def __init__(self, rate: float, *, rng: Any = None, name: str | None = None):
        super().__init__(name=name)
        if not 0.0 <= float(rate) <= 1.0:
            raise ArgumentError(f"Dropout: rate must be in [0, 1], got {rate}", loc=user_location())
        self.rate = float(rate)
        self.rng = None if rng is None or self.rate == 0.0 else generator(rng, "Dropout")

    def __call__(self, x: Any, *, deterministic: bool = False) -> Any:
        if deterministic or self.rate == 0.0:
            return fnp.asarray(x)
        if self.rng is None:
            raise ArgumentError(
                f"Dropout {self.path or self.name!r} needs rng= (an fj.random.Generator) to "
                "draw its masks, or deterministic=True",
                op="Dropout",
                loc=user_location(),
            )
        return dropout(x, self.rate, self.rng)


class MLP(Module):
    """``Dense(hidden) -> activation -> Dropout -> Dense(out_features)`` (a transformer's
    feed-forward block); ``out_features`` defaults to the input's size, ``activation`` to
    gelu (tanh approximation, as flax's and jax's). Kernel logical axes: ("embed", "mlp") and
    ("mlp", "embed")."""

    def __init__(
        self,
        hidden: int,
        out_features: int | None = None,
        *,
        in_features: int | None = None,
        activation: Callable[[Any], Any] = gelu,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = F32,
        kernel_init: Callable = default_kernel_init,
        rng: Any = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        keys = key_stream(rng, "MLP")
        out_features = out_features if out_features is not None else in_features
        dense = dict(
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            rng=keys,
        )
        self.up = Dense(hidden, in_features=in_features, kernel_axes=("embed", "mlp"), **dense)
        self._out_features = out_features
        self._dense = dense
        if out_features is not None:
            self.down = Dense(
                out_features, in_features=hidden, kernel_axes=("mlp", "embed"), **dense
            )
        self.activation = activation
        self.dropout = Dropout(dropout_rate, rng=rng if dropout_rate else None)

    def __call__(self, x: Any, *, deterministic: bool = False) -> Any:
        x = fnp.asarray(x)
        if "down" not in vars(self):
            self.down = Dense(
                x.shape[-1],
                in_features=self.up.features,
                kernel_axes=("mlp", "embed"),
                **self._dense,
            )
        h = self.activation(self.up(x))
        return self.down(self.dropout(h, deterministic=deterministic))


__all__ = ["Dense", "Dropout", "Embedding", "Layer", "LayerNorm", "MLP", "RMSNorm", "promote"]
