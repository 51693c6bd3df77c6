"""``fj.nn``: neural-network functions with jax.nn's signatures (API.md, section 2)."""

from flowjit.compiler.nn_api import (
    avg_pool2d,
    conv2d,
    dropout,
    gelu,
    layer_norm,
    log_softmax,
    logsumexp,
    max_pool2d,
    one_hot,
    relu,
    sigmoid,
    silu,
    softmax,
    softmax_cross_entropy,
    softplus,
    swish,
)

__all__ = [
    "avg_pool2d",
    "conv2d",
    "dropout",
    "gelu",
    "layer_norm",
    "log_softmax",
    "logsumexp",
    "max_pool2d",
    "one_hot",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "swish",
]
