"""``fj.nn``: neural-network functions with jax.nn's signatures (API.md, section 2). Every
jax.nn name this module does not define comes from jax.nn through ``fj.from_jax``."""

import jax.nn as _jnn

from flowjit.compiler.from_jax import bridged as _bridged

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


def __getattr__(name: str):
    return _bridged(_jnn, "flowjit.nn", name, globals())
