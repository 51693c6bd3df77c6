"""Attention: ``fj.nn.dot_product_attention`` (jax.nn's, written in flowjit's ops),
``fj.nn.MultiHeadAttention`` (flax.linen.MultiHeadDotProductAttention's parameters and
results) and ``fj.nn.KVCache``, the keys and values a decoder keeps between steps.

Shapes are jax's: ``[batch, length, heads, head_dim]`` (BTNH) for queries, keys and values;
masks and biases broadcast to ``[batch, heads, q_length, kv_length]``. The logits and the
softmax are float32 for 16-bit inputs, as in jax's XLA implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import jax.nn as jnn
import jax.nn.initializers as jinit

from flowjit.ir import ArgumentError, ShapeError

from . import numpy_api as fnp
from .from_jax import from_jax
from .layers import F32, Dropout, Layer, default_kernel_init, promote
from .location import user_location
from .nn_api import softmax
from .numpy_linalg import dynamic_update_slice, einsum, matmul
from .variable import Variable


def _large_negative(dtype: np.dtype) -> float:
    """What masked logits become (jax's ``_get_large_negative``)."""
    return float(-0.7 * np.finfo(dtype).max)


def _attend(query, key, value, bias, mask, scale, is_causal, weights_fn=None):
    """The attention of rank-4 (BTNH) ``query``, ``key``, ``value``; ``weights_fn`` (dropout)
    is applied to the probabilities."""
    logits = einsum("BTNH,BSNH->BNTS", query, key)
    if logits.dtype.itemsize < 4:
        logits = logits.astype(F32)
    logits = logits * np.asarray(scale, logits.dtype)
    if bias is not None:
        logits = (logits + bias).astype(logits.dtype)
    keep = None if mask is None else fnp.asarray(mask)
    if keep is not None and keep.dtype != np.bool_:
        raise ArgumentError(
            f"dot_product_attention: mask must be bool (True: attend), got {keep.dtype}",
            op="dot_product_attention",
            loc=user_location(),
        )
    if is_causal:
        t, s = logits.shape[-2:]
        causal = fnp.asarray(np.tril(np.ones((t, s), bool)))
        keep = causal if keep is None else fnp.logical_and(keep, causal)
    if keep is not None:
        logits = fnp.where(keep, logits, _large_negative(logits.dtype))
    probs = softmax(logits.astype(F32), axis=-1).astype(value.dtype)
    if weights_fn is not None:
        probs = weights_fn(probs)
    return einsum("BNTS,BSNH->BTNH", probs, value)


def dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    bias: Any = None,
    mask: Any = None,
    *,
    scale: float | None = None,
    is_causal: bool = False,
    **options: Any,
) -> Any:
    """jax.nn.dot_product_attention: ``softmax(query . key * scale + bias, masked) . value``
    over BTNH (or TNH) arrays, ``scale`` defaulting to ``1 / sqrt(head_dim)``; ``is_causal``
    lets query ``t`` see keys ``s <= t``. Its other options (sequence lengths, local windows,
    an implementation) run jax's own function."""
    if any(v is not None for v in options.values()):
        return from_jax(jnn.dot_product_attention, name="jax.nn.dot_product_attention")(
            query, key, value, bias, mask, scale=scale, is_causal=is_causal, **options
        )
    query, key, value = (fnp.asarray(x) for x in (query, key, value))
    ranks = {query.ndim, key.ndim, value.ndim}
    if ranks not in ({3}, {4}) or query.shape[-1] != key.shape[-1] or key.shape != value.shape:
        raise ShapeError(
            f"dot_product_attention takes query, key and value of rank 4 (batch, length, "
            f"heads, head_dim) or 3, with key and value of one shape and query's head_dim, got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}",
            op="dot_product_attention",
            loc=user_location(),
        )
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if query.ndim == 3:
        out = _attend(
            *(fnp.expand_dims(x, 0) for x in (query, key, value)), bias, mask, scale, is_causal
        )
        return fnp.squeeze(out, 0)
    return _attend(query, key, value, bias, mask, scale, is_causal)


class KVCache:
    """The keys and values a decoding MultiHeadAttention has seen, in Variables (``key``,
    ``value``: [batch, max_length, heads, head_dim]; ``index``: how many positions are
    filled). Each call with the cache appends its positions and attends to all filled ones;
    ``reset()`` empties it. Not part of the model's variables (not checkpointed)."""

    def __init__(
        self,
        batch: int,
        max_length: int,
        heads: int,
        head_dim: int,
        dtype: Any,
        name: str = "kv_cache",
    ):
        shape = (int(batch), int(max_length), int(heads), int(head_dim))
        self.key = Variable(np.zeros(shape, dtype), name=f"{name}/key", trainable=False)
        self.value = Variable(np.zeros(shape, dtype), name=f"{name}/value", trainable=False)
        self.index = Variable(np.int32(0), name=f"{name}/index", trainable=False)

    @property
    def max_length(self) -> int:
        return self.key.shape[1]

    def reset(self) -> None:
        self.index.assign(0)

    def append(self, key: Any, value: Any) -> tuple[Any, Any, Any]:
        """Write ``key`` and ``value`` ([batch, t, heads, head_dim]) at the filled length and
        advance it; the whole keys and values after the write, and the first new position.
        Past ``max_length`` the write lands at the end (XLA clamps) and the model sees stale
        positions: the caller keeps ``index + t <= max_length``."""
        start = self.index.read()
        for cell, new in ((self.key, key), (self.value, value)):
            cell.assign(dynamic_update_slice(cell, new.astype(cell.dtype), (0, start, 0, 0)))
        self.index.assign(start + key.shape[1])
        return self.key.read(), self.value.read(), start


class _HeadsProjection(Layer):
    """flax's DenseGeneral as attention uses it: [..., in] -> [..., heads, head_dim] (kernel
    (in, heads, head_dim)), or with ``merge`` [..., heads, head_dim] -> [..., out] (kernel
    (heads, head_dim, out)). The kernel is initialized as one (fan_in, fan_out) matrix."""

    def __init__(
        self,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        *,
        use_bias,
        kernel_init,
        bias_init,
        axes,
        rng,
        dtype,
        param_dtype,
    ):
        super().__init__(rng=rng, dtype=dtype, param_dtype=param_dtype, name=None)
        self.in_shape, self.out_shape = in_shape, out_shape
        fan = (math.prod(in_shape), math.prod(out_shape))
        flat_init = lambda key, shape, dtype: kernel_init(key, fan, dtype).reshape(shape)  # noqa: E731
        self.param("kernel", flat_init, in_shape + out_shape, self.param_dtype, axes=axes)
        self.use_bias = use_bias
        if use_bias:
            self.param(
                "bias",
                bias_init,
                out_shape,
                self.param_dtype,
                axes=None if axes is None else axes[len(in_shape) :],
            )

    def __call__(self, x: Any) -> Any:
        bias = self.bias if self.use_bias else None
        x, kernel, bias = promote(x, self.kernel, bias, dtype=self.dtype)
        lead = x.shape[: x.ndim - len(self.in_shape)]
        fan_in, fan_out = math.prod(self.in_shape), math.prod(self.out_shape)
        y = matmul(x.reshape(lead + (fan_in,)), kernel.reshape((fan_in, fan_out)))
        y = y.reshape(lead + self.out_shape)
        return y if bias is None else y + bias


class MultiHeadAttention(Layer):
    """flax.linen.MultiHeadDotProductAttention: ``query``, ``key`` and ``value`` projections
    (kernels (in, heads, head_dim)), ``fj.nn.dot_product_attention``, and the ``out``
    projection (kernel (heads, head_dim, out_features)). ``qkv_features`` defaults to the
    input's size and ``out_features`` to the query input's. Made at once when ``in_features``
    is given, else on the first call.

    ``attn(x)`` is self-attention; ``attn(q, kv)`` attends from q to kv. ``mask`` (bool, or
    flax's float masks of make_attention_mask, nonzero to attend; broadcast to [batch, heads,
    q_length, kv_length]) says which keys each query may see;
    ``causal=True`` adds the causal mask; ``cache=attn.init_cache(batch, max_length)`` decodes:
    the new positions are appended to the cache and attend to every filled one up to their
    own. ``dropout_rate`` drops attention weights (with ``rng``) unless ``deterministic``."""

    def __init__(
        self,
        num_heads: int,
        *,
        in_features: int | None = None,
        qkv_features: int | None = None,
        out_features: int | None = None,
        use_bias: bool = True,
        dropout_rate: float = 0.0,
        dtype: Any = None,
        param_dtype: Any = F32,
        kernel_init: Callable = default_kernel_init,
        bias_init: Callable = jinit.zeros,
        rng: Any = None,
        name: str | None = None,
    ):
        super().__init__(rng=rng, dtype=dtype, param_dtype=param_dtype, name=name)
        self.num_heads = int(num_heads)
        self._sizes = (qkv_features, out_features)
        self._inits = dict(use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init)
        self.dropout = Dropout(dropout_rate, rng=rng if dropout_rate else None)
        if in_features is not None:
            self._build(int(in_features), int(in_features))

    def _build(self, q_features: int, kv_features: int) -> None:
        qkv, out = self._sizes
        qkv = q_features if qkv is None else int(qkv)
        out = q_features if out is None else int(out)
        if qkv % self.num_heads:
            raise ShapeError(
                f"MultiHeadAttention: qkv_features {qkv} is not divisible by num_heads "
                f"{self.num_heads}",
                op="MultiHeadAttention",
                loc=user_location(),
            )
        heads = (self.num_heads, qkv // self.num_heads)
        common = dict(rng=self.rng, dtype=self.dtype, param_dtype=self.param_dtype, **self._inits)
        split = ("embed", "heads", "kv")
        self.query = _HeadsProjection((q_features,), heads, axes=split, **common)
        self.key = _HeadsProjection((kv_features,), heads, axes=split, **common)
        self.value = _HeadsProjection((kv_features,), heads, axes=split, **common)
        self.out = _HeadsProjection(heads, (out,), axes=("heads", "kv", "embed"), **common)

    @property
    def head_dim(self) -> int:
        return self.query.out_shape[1]

    def init_cache(self, batch: int, max_length: int, dtype: Any = None) -> KVCache:
        """An empty KVCache for ``batch`` sequences of up to ``max_length`` positions, in
        ``dtype`` (default: the layer's compute dtype, else its parameters')."""
        if "query" not in vars(self):
            raise ArgumentError(
                "MultiHeadAttention.init_cache: the layer has no weights yet; give it "
                "in_features=, or call it once first",
                op="MultiHeadAttention",
                loc=user_location(),
            )
        dtype = dtype or self.dtype or self.param_dtype
        return KVCache(
            batch,
            max_length,
            self.num_heads,
            self.head_dim,
            dtype,
            name=f"{self.path or self.name}/cache",
        )

    def __call__(
        self,
        inputs_q: Any,
        inputs_k: Any = None,
        inputs_v: Any = None,
        *,
        mask: Any = None,
        causal: bool = False,
        cache: KVCache | None = None,
        deterministic: bool = False,
    ) -> Any:
        inputs_q = fnp.asarray(inputs_q)
        inputs_k = inputs_q if inputs_k is None else fnp.asarray(inputs_k)
        inputs_v = inputs_k if inputs_v is None else fnp.asarray(inputs_v)
        if "query" not in vars(self):
            self._build(inputs_q.shape[-1], inputs_k.shape[-1])
        query, key, value = self.query(inputs_q), self.key(inputs_k), self.value(inputs_v)
        if mask is not None and fnp.asarray(mask).dtype != np.bool_:
            mask = fnp.asarray(mask) != 0  # (flax's masks are float32 ones and zeros)
        if cache is not None:
            key, value, start = cache.append(key, value)
            # query t (at start + t) sees the filled keys s <= start + t
            t = fnp.arange(query.shape[-3], dtype=np.int32)[:, None] + start
            seen = fnp.arange(cache.max_length, dtype=np.int32)[None, :] <= t
            mask = seen if mask is None else fnp.logical_and(mask, seen)
        drop = None if deterministic or self.dropout.rate == 0.0 else self.dropout
        x = _attend(
            query, key, value, None, mask, 1.0 / math.sqrt(query.shape[-1]), causal, weights_fn=drop
        )
        return self.out(x)


def causal_mask(length: int) -> Any:
    """[1, 1, length, length] bool: query t sees keys s <= t (flax's make_causal_mask)."""
    return np.tril(np.ones((length, length), bool))[None, None]


def padding_mask(valid_q: Any, valid_kv: Any = None) -> Any:
    """[batch, 1, q_length, kv_length] bool from per-position validity ([batch, length]
    bool): a query attends to a key when both are valid (flax's make_attention_mask)."""
    valid_q = fnp.asarray(valid_q)
    valid_kv = valid_q if valid_kv is None else fnp.asarray(valid_kv)
    return fnp.logical_and(valid_q[:, None, :, None], valid_kv[:, None, None, :])


__all__ = [
    "KVCache",
    "MultiHeadAttention",
    "causal_mask",
    "dot_product_attention",
    "padding_mask",
]
