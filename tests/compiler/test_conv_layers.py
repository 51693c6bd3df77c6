"""Conv and ConvTranspose (compiler/conv_layers.py) against flax.linen's: each configuration's
flax parameters are copied into the flowjit layer's Variables, and outputs (compiled by XLA and
run eagerly by the reference interpreter) and gradients must agree with flax's.

Tolerances: float32 results rtol = atol = 1e-5; bfloat16 results rtol = atol = 1e-2 (about
two units in the last place of bfloat16's 8-bit significand)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.compiler.conv_layers import Conv, ConvTranspose
from flowjit.compiler.module import Module

F32, BF16 = np.dtype(np.float32), np.dtype(jnp.bfloat16)
TOLERANCE = {F32: 1e-5, BF16: 1e-2}

# (id, keyword arguments of both layers, input shape); in_features is the shape's last dim,
# and dims before the spatial ones are batch dims (one, more, or none), as flax's.
CONV = [
    ("1d-strided-valid", dict(features=4, kernel_size=3, strides=2, padding="VALID"), (2, 9, 3)),
    ("1d-causal-dilated-nobatch", dict(features=4, kernel_size=(3,), padding="CAUSAL",
                                       kernel_dilation=2), (7, 3)),
    ("2d-same", dict(features=4, kernel_size=(3, 3)), (2, 5, 5, 2)),
    ("2d-explicit-input-dilation", dict(features=3, kernel_size=(3, 2), strides=(1, 2),
                                        padding=((1, 0), (2, 1)), input_dilation=(2, 1)),
     (2, 5, 4, 3)),
    ("2d-groups-dilation-int-pad", dict(features=6, kernel_size=(2, 3), padding=1,
                                        kernel_dilation=(2, 1), feature_group_count=2),
     (1, 6, 5, 4)),
    ("2d-circular-batch-dims", dict(features=4, kernel_size=(3, 2), padding="CIRCULAR"),
     (2, 2, 5, 4, 3)),
    ("2d-reflect-nobias", dict(features=4, kernel_size=(3, 3), strides=2, padding="REFLECT",
                               use_bias=False), (1, 6, 5, 2)),
    ("3d-same-strided-groups", dict(features=4, kernel_size=(2, 3, 2), strides=(2, 1, 2),
                                    feature_group_count=2), (2, 4, 4, 5, 2)),
    ("3d-explicit-nobatch", dict(features=2, kernel_size=(2, 2, 2), padding=((0, 1), (1, 0), 1),
                                 kernel_dilation=(1, 2, 1)), (3, 4, 4, 3)),
]
CONV_TRANSPOSE = [
    ("1d-valid", dict(features=3, kernel_size=(3,), strides=2, padding="VALID"), (2, 5, 2)),
    ("1d-circular-dilated", dict(features=4, kernel_size=(4,), strides=3, padding="CIRCULAR",
                                 kernel_dilation=2), (2, 5, 3)),
    ("2d-same", dict(features=4, kernel_size=(3, 2), strides=(2, 1)), (2, 5, 4, 3)),
    ("2d-same-transpose-kernel", dict(features=4, kernel_size=(3, 2), strides=(2, 1),
                                      transpose_kernel=True), (2, 5, 4, 3)),
    ("2d-explicit-transpose-kernel", dict(features=2, kernel_size=(3, 3), strides=2,
                                          padding=((1, 2), (0, 1)), transpose_kernel=True),
     (1, 4, 3, 3)),
    ("2d-circular-transpose-kernel", dict(features=2, kernel_size=(4, 3), strides=2,
                                          padding="CIRCULAR", transpose_kernel=True),
     (3, 3, 2)),
    ("3d-same-batch-dims", dict(features=2, kernel_size=(2, 2, 3), strides=(2, 1, 1)),
     (2, 1, 3, 2, 3, 2)),
]
CASES = [(nn.Conv, Conv, *case) for case in CONV] + [
    (nn.ConvTranspose, ConvTranspose, *case) for case in CONV_TRANSPOSE
]
IDS = [f"{ours.__name__}-{case_id}" for _, ours, case_id, _, _ in CASES]


def _input(shape, dtype=F32, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _layers(flax_cls, cls, kwargs, x, **extra):
    """The flax layer, random parameters of its shapes (jax's initializers would compile for
    each shape), and a flowjit layer holding a copy of them."""
    theirs = flax_cls(**kwargs, **extra)
    shapes = jax.eval_shape(theirs.init, jax.random.key(0), x)["params"]
    params = {p: _input(s.shape, s.dtype, seed=1) for p, s in shapes.items()}
    ours = cls(**kwargs, **extra, in_features=x.shape[-1], kernel_init=0.0, bias_init=0.0)
    assert {p: v.shape for p, v in ours.named_variables().items()} == {
        p: v.shape for p, v in params.items()
    }
    for path, value in params.items():
        ours.named_variables()[path].assign(value)
    return theirs, params, ours


def _close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = TOLERANCE[got.dtype]
    np.testing.assert_allclose(got.astype(F32), want.astype(F32), rtol=tol, atol=tol)


@pytest.mark.parametrize("flax_cls, cls, case_id, kwargs, shape", CASES, ids=IDS)
def test_output_matches_flax_compiled_and_eager(flax_cls, cls, case_id, kwargs, shape):
    x = _input(shape)
    theirs, params, ours = _layers(flax_cls, cls, kwargs, x)
    want = theirs.apply({"params": params}, x)
    step = fj.compile(ours)
    # 1-d and 2-d: flowjit's own conv2d op; 3-d: jax's convolution, one jax_call op
    ops = {"conv2d", "jax_call"}.intersection(step.lower(x).ir().replace("(", " ").split())
    assert ops == ({"jax_call"} if len(ours.kernel_size) == 3 else {"conv2d"})
    _close(step(x), want)
    fj.config.update("eager", True)
    try:
        _close(fj.compile(ours)(x), want)
    finally:
        fj.config.update("eager", False)


# (bfloat16 input, float32 params: computed in float32 as flax promotes; dtype=bfloat16: all
# three cast to bfloat16, the result too)
@pytest.mark.parametrize("dtype", [None, jnp.bfloat16], ids=["promoted", "bf16"])
@pytest.mark.parametrize(
    "flax_cls, cls, kwargs, shape",
    [
        (nn.Conv, Conv, dict(features=4, kernel_size=(3,), strides=2), (2, 7, 3)),
        (nn.Conv, Conv, dict(features=4, kernel_size=(3, 3), feature_group_count=2),
         (2, 5, 5, 2)),
        (nn.Conv, Conv, dict(features=2, kernel_size=(2, 2, 2)), (1, 3, 3, 3, 2)),
        (nn.ConvTranspose, ConvTranspose, dict(features=3, kernel_size=(3, 3), strides=2),
         (2, 3, 4, 2)),
    ],
    ids=["conv1d", "conv2d-groups", "conv3d", "transpose2d"],
)
def test_bfloat16_matches_flax(flax_cls, cls, kwargs, shape, dtype):
    x = _input(shape, BF16)
    theirs, params, ours = _layers(flax_cls, cls, kwargs, x, dtype=dtype)
    want = theirs.apply({"params": params}, x)
    assert want.dtype == (F32 if dtype is None else BF16)
    _close(fj.compile(ours)(x), want)


@pytest.mark.parametrize(
    "flax_cls, cls, case_id, kwargs, shape",
    [c for c in CASES if c[2] in ("1d-strided-valid", "2d-groups-dilation-int-pad",
                                  "3d-same-strided-groups", "2d-explicit-transpose-kernel")],
    ids=lambda v: v if isinstance(v, str) and "-" in v else "",
)
def test_gradients_match_jax_grad_of_flax(flax_cls, cls, case_id, kwargs, shape):
    x = _input(shape)
    theirs, params, ours = _layers(flax_cls, cls, kwargs, x)
    cotangent = _input(theirs.apply({"params": params}, x).shape, seed=1)

    def loss(p, x):
        return jnp.sum(theirs.apply({"params": p}, x) * cotangent)

    want_params, want_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

    @fj.compile
    def gradients(x):
        y = ours(x)
        return fj.gradients(fnp.sum(y * cotangent), [ours.kernel, ours.bias, x])

    kernel, bias, dx = gradients(x)
    _close(kernel, want_params["kernel"])
    _close(bias, want_params["bias"])
    _close(dx, want_x)


def test_lazy_kernel_is_made_once_inside_compile():
    class Net(Module):
        def __init__(self):
            self.conv = Conv(4, (3, 3), strides=2, rng=fj.random.Generator(0))

    net = Net()
    assert net.conv.kernel is None and net.variables == []
    step = fj.compile(lambda x: net.conv(x))
    x = _input((2, 6, 5, 3))
    first = np.asarray(step(x))
    kernel, bias = net.conv.kernel, net.conv.bias
    assert {p: v.shape for p, v in net.named_variables().items()} == {
        "conv/kernel": (3, 3, 3, 4), "conv/bias": (4,)
    }
    assert kernel.name == "conv/kernel"
    made = np.asarray(kernel)
    assert 0.1 < made.std() < 0.3 and not bias.value.any()  # (LeCun normal: 1/sqrt(27); zeros)
    np.testing.assert_array_equal(np.asarray(step(x)), first)  # (cached: no second trace)
    step(x[:1])  # a new signature: traced again, the same variables
    assert (net.conv.kernel, net.conv.bias) == (kernel, bias) and len(net.variables) == 2
    np.testing.assert_array_equal(np.asarray(kernel), made)
    assert step.cache_info().traces == 2
    want = nn.Conv(4, (3, 3), strides=2).apply({"params": {"kernel": made, "bias": bias.value}}, x)
    _close(first, want)


def test_kernel_axes_name_the_parameters_logical_axes():
    conv = Conv(4, (3, 3), in_features=2, kernel_axes=("h", "w", "in", "out"), kernel_init=0.0,
                bias_init=0.0)
    assert (conv.kernel.axes, conv.bias.axes) == (("h", "w", "in", "out"), ("out",))


def _line(make) -> str:
    return f"test_conv_layers.py:{make.__code__.co_firstlineno}:"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Conv(4, ()), r"kernel_size must be an int or a sequence"),
        (lambda: Conv(4, (3, 0)), r"kernel_size must be an int >= 1"),
        (lambda: Conv(4, 3, padding="FULL"), r"padding must be one of 'SAME', 'VALID'"),
        (lambda: ConvTranspose(4, 3, padding="REFLECT"), r"padding must be one of 'SAME'"),
        (lambda: Conv(4, (3, 3), padding=((1, 1),)), r"one int or \(low, high\) pair per"),
        (lambda: Conv(4, (3, 3), strides=(1, 2, 1)), r"strides must be .* \(2, one per"),
        (lambda: Conv(4, 3, feature_group_count=2, in_features=3, rng=0),
         r"in_features=3 must be divisible by feature_group_count=2"),
        (lambda: Conv(3, 3, feature_group_count=2), r"features=3 must be divisible"),
        (lambda: Conv(4, (3, 3), padding="CAUSAL"), r"'CAUSAL' is for 1-d"),
        (lambda: Conv(4, 3, input_dilation=2), r"input_dilation \(2,\) needs explicit padding"),
        (lambda: Conv(4, 3, kernel_axes=("a", "b")), r"kernel_axes \('a', 'b'\) name 2"),
        (lambda: Conv(4, 3, in_features=2), r"needs rng="),
    ],
    ids=lambda v: None,
)
def test_bad_arguments_are_errors_at_the_users_line(make, message):
    with pytest.raises(fj.FlowjitError, match=message) as info:
        make()
    assert str(info.value).startswith(_line(make))


def test_bad_inputs_are_errors_at_the_users_line():
    built = Conv(4, (3, 3), in_features=2, kernel_init=0.0, bias_init=0.0)
    for conv, shape, message in [
        (built, (1, 4, 4, 3), r"built for 2 input features; got .* \(3 features\)"),
        (built, (4, 2), r"takes inputs \(\*batch, 2 spatial dims, features\), of rank >= 3"),
        (Conv(4, (3, 3)), (1, 4, 4, 2), r"Conv 'kernel' needs rng="),  # (built on this call)
    ]:
        call = lambda x: conv(x)  # noqa: E731
        with pytest.raises(fj.FlowjitError, match=message) as info:
            fj.compile(call)(_input(shape))
        assert str(info.value).startswith(_line(call))
