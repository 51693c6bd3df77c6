"""fj.checkpoint (fj.remat), fj.checkpoint_policies, fj.checkpoint_name and fj.scan(remat=True):
gradients with remat equal those without and jax's (inside and outside fj.compile, nested,
second order, reading and writing variables); XLA's temporary bytes of a 16-layer MLP's and
a small transformer's gradient step (the models of bench/remat.py) with remat are at most half
of without, as they are for jax.checkpoint; each policy saves what it says; bad input is a
clear error at the user's line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import checkpoint_name as jax_checkpoint_name

import flowjit as fj
import flowjit.numpy as fnp

_spec = importlib.util.spec_from_file_location(
    "bench_remat", Path(__file__).resolve().parents[2] / "bench" / "remat.py"
)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # (its dataclasses look their module up)
_spec.loader.exec_module(bench)

RTOL, ATOL = 2e-5, 2e-6
RNG = np.random.default_rng(0)
WS = [(RNG.standard_normal((6, 6)) / 2).astype(np.float32) for _ in range(3)]
X = RNG.standard_normal((4, 6)).astype(np.float32)


def assert_trees_close(got, want, rtol=RTOL, atol=ATOL):
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol, atol),
        got,
        want,
    )


def block(xp, nn, name):
    """One layer; its pre-activation is named "z" for save_only_these_names."""

    def f(h, w):
        z = name(h @ w, "z")
        return nn.tanh(xp.sin(z) * h) + 0.5 * z

    return f


fj_block = block(fnp, fj.nn, fj.checkpoint_name)
jax_block = block(jnp, jax.nn, jax_checkpoint_name)


def stack_loss(layer):
    def loss(ws, x):
        h = x
        for w in ws:
            h = layer(h, w)
        return (h * h).sum()

    return loss


def jax_grads(remat=False):
    layer = jax.checkpoint(jax_block) if remat else jax_block
    return jax.grad(stack_loss(layer))(WS, X)


POLICIES = [
    None,
    fj.checkpoint_policies.nothing_saveable,
    fj.checkpoint_policies.everything_saveable,
    fj.checkpoint_policies.dots_saveable,
    fj.checkpoint_policies.checkpoint_dots,
    fj.checkpoint_policies.dots_with_no_batch_dims_saveable,
    fj.checkpoint_policies.save_only_these_names("z"),
    jax.checkpoint_policies.dots_saveable,  # (jax's own policy objects are understood)
]


def policy_id(policy) -> str:
    """A test id that is the same in every process (a jax function's repr holds its address)."""
    if type(policy).__name__ == "function":  # (jax's)
        return f"jax.{policy.__name__}"
    return repr(policy)


@pytest.mark.parametrize("policy", POLICIES, ids=policy_id)
def test_gradients_equal_those_without_remat_and_jax_under_every_policy(policy):
    want = jax_grads()
    remat_loss = stack_loss(fj.checkpoint(fj_block, policy=policy))
    assert_trees_close(fj.grad(remat_loss)(WS, X), want)  # (fj.grad compiles itself)
    assert_trees_close(fj.compile(fj.grad(remat_loss))(WS, X), want)
    assert_trees_close(fj.grad(stack_loss(fj_block))(WS, X), want)
    assert_trees_close(jax_grads(remat=True), want)


def test_fj_remat_is_fj_checkpoint_and_values_are_unchanged():
    assert fj.remat is fj.checkpoint
    f = fj.compile(stack_loss(fj.remat(fj_block)))
    np.testing.assert_allclose(f(WS, X), stack_loss(jax_block)(WS, X), rtol=RTOL)


def test_nested_checkpoints_and_second_order():
    inner = fj.checkpoint(fj_block, policy=fj.checkpoint_policies.dots_saveable)

    def two_layers(h, w1, w2):
        return inner(inner(h, w1), w2)

    outer = fj.checkpoint(two_layers)

    def loss(ws, x):
        return (outer(x, ws[0], ws[1]) ** 2).sum()

    def jax_loss(ws, x):
        j = jax.checkpoint(jax_block, policy=jax.checkpoint_policies.dots_saveable)
        return (jax.checkpoint(lambda h, a, b: j(j(h, a), b))(x, ws[0], ws[1]) ** 2).sum()

    assert_trees_close(fj.grad(loss)(WS[:2], X), jax.grad(jax_loss)(WS[:2], X))

    # the gradient of a gradient: d/dx of sum(d loss / d x)
    def second(x):
        return fj.grad(lambda x: loss(WS[:2], x))(x).sum()

    def jax_second(x):
        return jax.grad(lambda x: jax_loss(WS[:2], x))(x).sum()

    assert_trees_close(fj.grad(second)(X), jax.grad(jax_second)(X), rtol=1e-4, atol=1e-5)


def test_static_argnums_keyword_arguments_and_closures():
    def layer(h, w, power, shift, scale):
        act = fnp.tanh if power > 2 else fnp.sin  # (a Python branch: power is static)
        return (act(h @ w) ** power + shift) * scale

    @fj.compile
    def grads(ws, x):
        scale = x.mean() * 0 + 1.5  # a Tensor of the enclosing trace, closed over
        f = fj.checkpoint(lambda h, w, p, shift: layer(h, w, p, shift, scale), static_argnums=(2,))

        def loss(ws):
            h = f(x, ws[0], 2, shift=0.5)
            return (f(h, ws[1], 3, shift=x.sum()) ** 2).sum()

        return fj.grad(loss)(ws)

    def jax_loss(ws, x):
        h = (jnp.sin(x @ ws[0]) ** 2 + 0.5) * 1.5
        return (((jnp.tanh(h @ ws[1]) ** 3 + x.sum()) * 1.5) ** 2).sum()

    assert_trees_close(grads(WS[:2], X), jax.grad(jax_loss)(WS[:2], X))


def test_variables_read_and_written_inside_a_checkpoint():
    w = fj.Variable(WS[0], name="w")
    calls = fj.Variable(np.zeros((), np.float32), name="calls")

    def layer(h):
        calls.assign_add(1.0)  # once per forward call: the recomputation writes nothing
        return fnp.tanh(h @ w) * h

    @fj.compile
    def step(x):
        loss = (fj.checkpoint(layer)(fj.checkpoint(layer)(x)) ** 2).sum()
        return fj.gradients(loss, [w, x])

    got = step(X)

    def jax_loss(w, x):
        layer = lambda h: jnp.tanh(h @ w) * h
        return (layer(layer(x)) ** 2).sum()

    assert_trees_close(tuple(got), jax.grad(jax_loss, (0, 1))(WS[0], X))
    assert float(np.asarray(calls)) == 2.0


def test_scan_remat_equals_scan_and_saves_only_carries():
    n = 24

    def cell(xp, nn):
        def f(h, x):
            a = nn.gelu(h @ x)
            b = xp.sin(a @ x.T)
            return xp.tanh(a @ b / 8), (a * a).mean()

        return f

    xs = (RNG.standard_normal((n, 32, 32)) / 8).astype(np.float32)
    h0 = RNG.standard_normal((32, 32)).astype(np.float32)

    def fj_loss(h0, xs, remat):
        h, ys = fj.scan(cell(fnp, fj.nn), h0, xs, remat=remat)
        return (h * h).sum() + ys.sum()

    def jax_loss(h0, xs):
        h, ys = jax.lax.scan(jax.checkpoint(cell(jnp, jax.nn)), h0, xs)
        return (h * h).sum() + ys.sum()

    plain = fj.compile(fj.grad(lambda h, xs: fj_loss(h, xs, False), (0, 1)))
    remat = fj.compile(fj.grad(lambda h, xs: fj_loss(h, xs, True), (0, 1)))
    want = jax.grad(jax_loss, (0, 1))(h0, xs)
    assert_trees_close(remat(h0, xs), want, rtol=1e-4, atol=1e-5)
    assert_trees_close(plain(h0, xs), want, rtol=1e-4, atol=1e-5)
    # per step, the forward loop saves the carry only (32x32), not a, b and their products
    plain_bytes = plain.lower(h0, xs).compile().memory_analysis().temp_size_in_bytes
    remat_bytes = remat.lower(h0, xs).compile().memory_analysis().temp_size_in_bytes
    assert remat_bytes <= plain_bytes / 2, (remat_bytes, plain_bytes)
    text = remat.lower(h0, xs).ir()
    assert "remat(" in text and "optimization_barrier" not in text  # (prevent_cse=False)


def test_a_host_call_inside_runs_once_its_result_kept_not_recomputed():
    calls = []

    def on_host(a):
        calls.append(1)
        return np.cos(a)

    def layer(h):
        result = fj.ShapeDtype(h.shape, h.dtype)
        y = fj.host_call(on_host, fj.stop_gradient(h), result_shape_dtypes=result)
        return fnp.tanh(y * h) * h  # (the gradient of the product reads y)

    got = fj.compile(fj.grad(lambda x: fj.checkpoint(layer)(x).sum()))(X)

    def jax_loss(x):
        y = jax.lax.stop_gradient(jnp.cos(x))
        return (jnp.tanh(y * x) * x).sum()

    assert_trees_close(got, jax.grad(jax_loss)(X))
    assert len(calls) == 1


def test_eager_mode_gives_the_same_gradients():
    fj.config.update("eager", True)
    try:
        remat_loss = stack_loss(
            fj.checkpoint(fj_block, policy=fj.checkpoint_policies.dots_saveable)
        )
        got = fj.compile(fj.grad(remat_loss))(WS, X)
    finally:
        fj.config.update("eager", False)
    assert_trees_close(got, jax_grads())


def test_the_barrier_reaches_xla():
    """One stablehlo.optimization_barrier per checkpointed layer (XLA turns each into
    scheduling constraints, so its optimized HLO holds none; the temp bytes below show the
    effect)."""
    step = fj.compile(fj.grad(stack_loss(fj.checkpoint(fj_block))))
    assert step.lower(WS, X).stablehlo().count("stablehlo.optimization_barrier") == len(WS)
    plain = fj.compile(fj.grad(stack_loss(fj_block))).lower(WS, X).stablehlo()
    assert "optimization_barrier" not in plain


# -- memory: the bench's models ---------------------------------------------------------
MODELS = bench.models(bench.QUICK)


@pytest.mark.parametrize("model", list(MODELS))
def test_remat_at_least_halves_temp_bytes_as_jax_checkpoint_does(model):
    loss, params, x = MODELS[model]
    temp, grads = {}, {}
    for lib in (bench.FLOWJIT, bench.JAX):
        for remat in (False, True):
            step = bench.gradient_step(lib, loss, remat)
            temp[lib.name, remat] = bench.temp_bytes(step, params, x)
            grads[lib.name, remat] = step(params, x)
    for got in grads.values():
        assert_trees_close(got, grads["jax", False], rtol=2e-4, atol=2e-5)
    assert temp["flowjit", True] <= temp["flowjit", False] / 2, temp
    assert temp["jax", True] <= temp["jax", False] / 2, temp  # (the size is one where it holds)


def test_policies_fall_between_the_extremes():
    """The transformer under each policy: saving nothing takes the fewest temporary bytes,
    saving everything as many as no remat at all, saving the dots in between; the forward op
    gives the saved values as extra results."""
    loss, params, x = MODELS["transformer (4 blocks)"]
    p = fj.checkpoint_policies
    temp, results = {}, {}
    for policy in (p.nothing_saveable, p.dots_saveable, p.everything_saveable):
        step = bench.gradient_step(bench.FLOWJIT, loss, True, policy)
        lowered = step.lower(params, x)
        temp[policy.name] = lowered.compile().memory_analysis().temp_size_in_bytes
        remats = [line for line in lowered.ir().splitlines() if "= remat(" in line]
        results[policy.name] = remats[0].split(" = ")[0].count("%")
        assert_trees_close(
            step(params, x),
            bench.gradient_step(bench.JAX, loss, False)(params, x),
            rtol=2e-4,
            atol=2e-5,
        )
    plain = bench.temp_bytes(bench.gradient_step(bench.FLOWJIT, loss, False), params, x)
    assert temp["nothing_saveable"] < temp["dots_saveable"] < temp["everything_saveable"]
    assert temp["everything_saveable"] >= 0.9 * plain
    # a block's one result; + the dots its backward pass reads: 5 weight matmuls (not the
    # last, whose result only a sum reads) and the 2 attention einsums
    assert (results["nothing_saveable"], results["dots_saveable"]) == (1, 1 + 7)
    assert results["everything_saveable"] > 8


def test_dots_with_no_batch_dims_skips_the_attention_einsums():
    loss, params, x = MODELS["transformer (4 blocks)"]
    policy = fj.checkpoint_policies.dots_with_no_batch_dims_saveable
    text = bench.gradient_step(bench.FLOWJIT, loss, True, policy).lower(params, x).ir()
    remat = next(line for line in text.splitlines() if "= remat(" in line)
    # the result + 5 weight matmuls (as above), not the attention einsums (batched dots)
    assert remat.split(" = ")[0].count("%") == 1 + 5


def test_save_only_these_names_saves_the_named_values():
    def layer(h, w):
        a = fj.checkpoint_name(h @ w, "pre")
        return fnp.sin(a) * fnp.cos(fj.checkpoint_name(a * 2, "double"))

    def results(*names):
        f = fj.checkpoint(layer, policy=fj.checkpoint_policies.save_only_these_names(*names))
        step = fj.compile(fj.value_and_grad(lambda w, x: f(x, w).sum()))
        text = step.lower(WS[0], X).ir()
        line = next(line for line in text.splitlines() if "= remat(" in line)
        return line.split(" = ")[0].count("%")

    assert results() == 1
    assert results("pre") == 2
    assert results("pre", "double") == 3
    assert results("unused") == 1


# -- errors --------------------------------------------------------------------------------
def test_bad_policy_names_the_users_line():
    with pytest.raises(fj.ArgumentError, match="policy=.* is not one flowjit knows") as info:
        fj.checkpoint(fj_block, policy="dots")
    assert "test_remat.py" in str(info.value)
    for policy in (
        jax.checkpoint_policies.save_only_these_names,  # (the factory, not called)
        jax.checkpoint_policies.save_only_these_names("z"),  # (a closure flowjit cannot read)
    ):
        with pytest.raises(fj.ArgumentError, match="use one of fj.checkpoint_policies"):
            fj.checkpoint(fj_block, policy=policy)


def test_bad_names_and_arguments_are_clear_errors():
    with pytest.raises(fj.ArgumentError, match="non-empty string without commas"):
        fj.checkpoint_policies.save_only_these_names("a,b")
    with pytest.raises(fj.ArgumentError, match="needs a function"):
        fj.checkpoint(3)
    with pytest.raises(fj.ArgumentError, match="prevent_cse must be True or False"):
        fj.checkpoint(fj_block, prevent_cse="yes")
    with pytest.raises(fj.ArgumentError, match="static_argnums=5 is out of range") as info:
        fj.checkpoint(fj_block, static_argnums=5)
    assert "test_remat.py" in str(info.value)

    @fj.compile
    def named(x):
        return fj.checkpoint_name(x, "")

    with pytest.raises(fj.ArgumentError, match="non-empty string") as info:
        named(X)
    assert "test_remat.py" in str(info.value)


def test_outside_a_trace_the_function_runs():
    assert fj.checkpoint(lambda a, b: a * b + 1)(3, 4) == 13
    assert fj.checkpoint_name(5.0, "x") == 5.0
