"""fj.nn's layers against flax.linen's (issue 24, item 2): each layer, made on its first
call inside fj.compile and then given random weights in the flax layer's layout (loaded into
its Variables by path, so the paths are flax's too), computes flax's result, and its
gradients are jax.grad's of the flax model. The layers start from zeros (ZERO): their own
initializers are test_module.py's subject, and random ones would compile per shape.

Tolerances: float32 rtol 1e-5, atol 1e-6 (attention, with its softmax, and gradients: atol
1e-5); bfloat16 compute (dtype=bf16, parameters float32) against flax's bfloat16 result: rtol
2e-2, atol 2e-2 (a few bfloat16 roundings of 2**-8; flax's attention takes its logits in
bfloat16, jax's and flowjit's in float32); the normalizations of bfloat16 data against a
float64 reference as their test says."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

import flowjit as fj

BF16 = jnp.bfloat16
F32_TOL = {"rtol": 1e-5, "atol": 1e-6}
ATTENTION_TOL = {"rtol": 1e-5, "atol": 1e-5}
BF16_TOL = {"rtol": 2e-2, "atol": 2e-2}
ZERO = jax.nn.initializers.zeros


def data(*shape, dtype=np.float32, seed=0, mean=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) + mean).astype(dtype)


def flax_params(module, *args):
    """Parameters in ``module``'s layout, drawn by numpy (standard normal times 0.3: biases
    and scales are not zeros and ones; no jax random compiled per shape)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)["params"]
    leaves, tree = jax.tree.flatten(shapes)
    values = [0.3 * data(*p.shape, seed=10 + i) for i, p in enumerate(leaves)]
    return jax.tree.unflatten(tree, [v.astype(p.dtype) for v, p in zip(values, leaves)])


def load(layer, params):
    """Copy flax's ``params`` into ``layer``'s Variables by path (the same paths)."""
    flat = flatten_dict(params, sep="/")
    variables = layer.named_variables()
    assert sorted(variables) == sorted(flat)
    for path, variable in variables.items():
        assert variable.shape == flat[path].shape and variable.dtype == flat[path].dtype
        variable.assign(np.asarray(flat[path]))


def check(layer, call, module, flax_call, args, tol):
    """``call(*args)`` (using ``layer``) compiled: made on its first call, then run with
    ``module``'s weights, gives ``flax_call(params, *args)``'s result and dtype. Returns
    the weights and the compiled function."""
    compiled = fj.compile(call)
    compiled(*args)  # makes the layer's variables
    params = flax_params(module, *args)
    load(layer, params)
    got, want = compiled(*args), jax.jit(flax_call)(params, *args)
    assert compiled.cache_info().traces == 1
    assert got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), **tol)
    return params, compiled


# -- Dense, Embedding, MLP ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "use_bias, shape, dtype",
    [(True, (3, 5), None), (False, (2, 3, 5), None), (True, (2, 3, 5), BF16)],
)
def test_dense_equals_flax(use_bias, shape, dtype):
    layer = fj.nn.Dense(4, use_bias=use_bias, dtype=dtype, kernel_init=ZERO)
    module = nn.Dense(4, use_bias=use_bias, dtype=dtype)
    check(
        layer,
        layer,
        module,
        lambda p, x: module.apply({"params": p}, x),
        (data(*shape),),
        F32_TOL if dtype is None else BF16_TOL,
    )
    assert layer.kernel.dtype == np.float32  # param_dtype


@pytest.mark.parametrize("dtype", [None, BF16])
def test_embedding_lookup_and_attend_equal_flax(dtype):
    layer = fj.nn.Embedding(10, 6, dtype=dtype, embedding_init=ZERO)
    module = nn.Embed(10, 6, dtype=dtype)

    def flax_call(params, ids, x):
        lookup = module.apply({"params": params}, ids)
        return lookup, module.apply({"params": params}, x, method=module.attend)

    ids, x = np.array([[0, 3, 9], [2, 2, 5]], np.int32), data(2, 6)
    params = flax_params(module, ids)
    load(layer, params)
    got = fj.compile(lambda ids, x: (layer(ids), layer.attend(x)))(ids, x)
    for g, w in zip(got, flax_call(params, ids, x)):
        assert g.dtype == w.dtype
        tol = F32_TOL if dtype is None else BF16_TOL
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), **tol)


class FlaxMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(16, name="up")(x))
        return nn.Dense(x.shape[-1], name="down")(h)


def test_mlp_equals_flax_dense_gelu_dense():
    layer = fj.nn.MLP(16, kernel_init=ZERO)
    module = FlaxMLP()
    check(
        layer, layer, module, lambda p, x: module.apply({"params": p}, x), (data(2, 3, 6),), F32_TOL
    )


# -- LayerNorm, RMSNorm ------------------------------------------------------------------------


def norm_ref(x, scale, bias=None, eps=1e-6, rms=False):
    """The float64 reference."""
    x = np.asarray(x, np.float64)
    mean = 0.0 if rms else x.mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    y = y * np.asarray(scale, np.float64)
    return y if bias is None else y + np.asarray(bias, np.float64)


NORMS = {"layer": (fj.nn.LayerNorm, nn.LayerNorm), "rms": (fj.nn.RMSNorm, nn.RMSNorm)}


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_norms_equal_flax_in_float32(kind):
    ours, theirs = NORMS[kind]
    layer, module = ours(), theirs()
    check(layer, layer, module, lambda p, x: module.apply({"params": p}, x), (data(4, 8),), F32_TOL)


@pytest.mark.parametrize("kind", ["layer", "rms"])
@pytest.mark.parametrize("dtype", [None, BF16])
def test_norms_of_bfloat16_data_with_a_large_mean_take_float32_statistics(kind, dtype):
    """bfloat16 rows of mean 20 and standard deviation 1 (statistics in bfloat16 would lose
    the variance entirely). With dtype None the result is float32 (promoted with the float32
    parameters): within 1e-6 of float64; with dtype=bf16 within a bfloat16 rounding (2**-8
    relative) of float64. Either way no further from float64 than flax, whose float32
    LayerNorm takes the variance as E[x**2] - E[x]**2 and is off by ~2e-5 here, hence the
    tolerance against flax for float32 output, atol 1e-4."""
    ours, theirs = NORMS[kind]
    layer, module = ours(dtype=dtype), theirs(dtype=dtype)
    x = data(4, 64, dtype=BF16, mean=20.0)
    against_flax = {"rtol": 0, "atol": 1e-4} if dtype is None else BF16_TOL
    apply = lambda p, x: module.apply({"params": p}, x)
    params, compiled = check(layer, layer, module, apply, (x,), against_flax)
    want = norm_ref(x, params["scale"], params.get("bias"), rms=kind == "rms")
    err = np.abs(np.asarray(compiled(x), np.float64) - want)
    flax_err = np.abs(np.asarray(apply(params, x), np.float64) - want)
    if dtype is None:
        assert err.max() < 1e-6, err.max()
    else:
        assert np.all(err <= 2.0**-8 * np.abs(want)), err.max()
    assert err.max() <= flax_err.max() + 1e-7, (err.max(), flax_err.max())


# -- attention ---------------------------------------------------------------------------------


def flax_mha(dtype=None):
    return nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, dtype=dtype)


VALID = np.array([[True, True, True, True], [True, True, False, False]])


@pytest.mark.parametrize("case", ["self", "cross", "causal", "padding", "flax_mask", "causal_bf16"])
def test_multi_head_attention_equals_flax(case):
    """causal=True and bool masks against flax's float masks, and flax's masks themselves."""
    dtype = BF16 if case.endswith("bf16") else None
    layer = fj.nn.MultiHeadAttention(2, qkv_features=8, dtype=dtype, kernel_init=ZERO)
    module = flax_mha(dtype)
    x, kv = data(2, 4, 6), data(2, 5, 3, seed=1)
    args, ours, theirs = (x,), {}, {}
    if case == "cross":
        args = (x, kv)
    elif case.startswith("causal"):
        ours, theirs = {"causal": True}, {"mask": nn.make_causal_mask(VALID)}
    elif case == "padding":
        ours = {"mask": np.asarray(nn.make_attention_mask(VALID, VALID, dtype=bool))}
        theirs = {"mask": nn.make_attention_mask(VALID, VALID)}
    elif case == "flax_mask":
        mask = nn.combine_masks(nn.make_attention_mask(VALID, VALID), nn.make_causal_mask(VALID))
        ours = theirs = {"mask": mask}
    check(
        layer,
        lambda *a: layer(*a, **ours),
        module,
        lambda p, *a: module.apply({"params": p}, *a, **theirs),
        args,
        ATTENTION_TOL if dtype is None else BF16_TOL,
    )


def test_masks_equal_flax_masks():
    np.testing.assert_array_equal(fj.nn.causal_mask(4), nn.make_causal_mask(VALID)[:1])
    got = fj.compile(fj.nn.padding_mask)(VALID)
    np.testing.assert_array_equal(np.asarray(got), nn.make_attention_mask(VALID, VALID))


@pytest.mark.parametrize("case", ["mask", "bias", "causal", "rank3"])
def test_dot_product_attention_equals_jax(case):
    q, k, v = data(2, 3, 2, 4), data(2, 5, 2, 4, seed=1), data(2, 5, 2, 4, seed=2)
    options = {}
    if case == "mask":
        options = {"mask": np.random.default_rng(3).random((2, 1, 3, 5)) < 0.7}
        options["mask"][..., 0] = True  # every query sees a key
    elif case == "bias":
        options = {"bias": data(1, 2, 3, 5, seed=4)}
    elif case == "causal":
        options = {"is_causal": True, "scale": 0.3}
    else:
        q, k, v = q[0], k[0], v[0]
    got = fj.compile(lambda q, k, v: fj.nn.dot_product_attention(q, k, v, **options))(q, k, v)
    want = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, **options))(q, k, v)
    np.testing.assert_allclose(np.asarray(got), want, **ATTENTION_TOL)


def test_kv_cache_decoding_equals_the_full_causal_pass():
    """A prefill of 2 positions, then one position at a time through the cache, gives the
    full causal pass's outputs; after reset() the same again."""
    layer = fj.nn.MultiHeadAttention(2, in_features=6, kernel_init=ZERO)
    for i, variable in enumerate(layer.variables):
        variable.assign(0.3 * data(*variable.shape, seed=i))
    x = data(2, 5, 6)
    full = np.asarray(fj.compile(lambda x: layer(x, causal=True))(x))
    cache = layer.init_cache(2, 8)
    step = fj.compile(lambda x: layer(x, cache=cache))
    for _ in range(2):
        got = [step(x[:, :2])] + [step(x[:, t : t + 1]) for t in range(2, 5)]
        np.testing.assert_allclose(np.concatenate(got, axis=1), full, **ATTENTION_TOL)
        assert int(np.asarray(cache.index)) == 5
        cache.reset()
        assert int(np.asarray(cache.index)) == 0
    assert step.cache_info().traces == 2  # the prefill and the one-position step
    assert len(layer.variables) == 8  # not the cache's


# -- Dropout ---------------------------------------------------------------------------------


def test_dropout_draws_its_mask_from_the_generator():
    x = np.ones((64, 64), np.float32)
    drop, twin = (fj.nn.Dropout(0.5, rng=fj.random.Generator(3)) for _ in range(2))
    f = fj.compile(lambda x: (drop(x), drop(x), twin(x), drop(x, deterministic=True)))
    first, second, same_seed, kept = (np.asarray(y) for y in f(x))
    np.testing.assert_array_equal(kept, x)
    assert set(np.unique(first)) == {0.0, 2.0}  # the kept scaled by 1 / (1 - rate)
    assert abs((first == 0).mean() - 0.5) < 0.04  # 5 standard deviations of 4096 draws
    assert not np.array_equal(first, second)  # the generator's state advanced
    np.testing.assert_array_equal(same_seed, first)


# -- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "layer_norm", "attention"])
def test_gradients_equal_jax_grad_of_flax(kind):
    """d sum(layer(x) * w) / d (x, every variable), against jax.grad of the flax layer."""
    layer, module = {
        "dense": lambda: (fj.nn.Dense(4, kernel_init=ZERO), nn.Dense(4)),
        "layer_norm": lambda: (fj.nn.LayerNorm(), nn.LayerNorm()),
        "attention": lambda: (
            fj.nn.MultiHeadAttention(2, qkv_features=8, kernel_init=ZERO),
            flax_mha(),
        ),
    }[kind]()
    x = data(2, 4, 6)
    w = data(2, 4, layer.features if kind == "dense" else 6, seed=5)
    params = flax_params(module, x)

    def loss(p, x):
        return jnp.sum(module.apply({"params": p}, x) * w)

    @fj.compile
    def grads(x):
        x = fj.numpy.asarray(x)
        y = (layer(x) * w).sum()
        return fj.gradients(y, [x, *layer.variables])

    grads(x)  # makes the variables
    load(layer, params)
    got = grads(x)
    want_params, want_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    want = flatten_dict(want_params, sep="/")
    assert len(got) == 1 + len(want)
    np.testing.assert_allclose(np.asarray(got[0]), want_x, **ATTENTION_TOL)
    for (path, _), g in zip(layer.named_variables().items(), got[1:]):
        np.testing.assert_allclose(np.asarray(g), want[path], err_msg=path, **ATTENTION_TOL)
