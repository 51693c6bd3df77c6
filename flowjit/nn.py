"""``fj.nn``: neural-network functions with jax.nn's signatures (API.md, section 2). Every
jax.nn name this module does not define comes from jax.nn through ``fj.from_jax``."""

import jax.nn as _jnn

from flowjit.compiler.from_jax import JaxNamespace as _JaxNamespace
from flowjit.compiler.from_jax import bridged as _bridged
from flowjit.compiler.from_jax import with_jax_signatures as _with_jax_signatures

from flowjit.compiler.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    dot_product_attention,
    padding_mask,
)
from flowjit.compiler.conv_layers import Conv, ConvTranspose
from flowjit.compiler.layers import MLP, Dense, Dropout, Embedding, LayerNorm, RMSNorm
from flowjit.compiler.module import axis_rules, logical_spec, with_logical_constraint
from flowjit.compiler.scan_layers import ScanLayers
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
    "Conv",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "Embedding",
    "KVCache",
    "LayerNorm",
    "MLP",
    "MultiHeadAttention",
    "RMSNorm",
    "ScanLayers",
    "axis_rules",
    "causal_mask",
    "dot_product_attention",
    "logical_spec",
    "padding_mask",
    "with_logical_constraint",
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

# jax.nn.initializers: ``initializers.normal(0.02)`` is jax's initializer, callable on a key
# from an fj.random.Generator (``g.key()``) and a shape inside a compiled function
initializers = _JaxNamespace(_jnn.initializers, "fj.nn.initializers", factories=True)

# a call flowjit's own function does not take (a keyword only jax's has) is jax's
_with_jax_signatures(globals(), _jnn, "flowjit.nn")


def __getattr__(name: str):
    return _bridged(_jnn, "flowjit.nn", name, globals())
