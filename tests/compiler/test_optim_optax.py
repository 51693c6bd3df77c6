"""fj.optim runs optax (issue 22, item 5): any GradientTransformation — schedules, chain,
masks, MultiSteps, EMA — trains the same as optax under jax.jit, its state lives in
Variables (reachable, checkpointed with the model), and a shared step count is one Variable."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowjit as fj
import flowjit.numpy as fnp

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 3)).astype(np.float32)
Y = RNG.standard_normal((16, 2)).astype(np.float32)
PARAMS = {
    "w": RNG.standard_normal((3, 2)).astype(np.float32),
    "b": np.zeros(2, np.float32),
}


def loss(params, x, y):
    return ((x @ params["w"] + params["b"] - y) ** 2).mean()


SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.1, warmup_steps=3, decay_steps=10)
TRANSFORMS = {
    "adamw_schedule_mask": lambda: optax.adamw(
        SCHEDULE, weight_decay=0.1, mask={"w": True, "b": False}
    ),
    "chain_clip_adamw": lambda: optax.chain(
        optax.clip_by_global_norm(0.5), optax.adamw(SCHEDULE, weight_decay=0.01)
    ),
    "multi_steps": lambda: optax.MultiSteps(optax.adam(0.05), every_k_schedule=3),
    "ema_of_updates": lambda: optax.chain(optax.ema(0.9), optax.sgd(0.1)),
    "lion": lambda: optax.lion(0.01),
    "rmsprop": lambda: optax.rmsprop(0.01, momentum=0.9),
}


def jax_run(tx, steps):
    """The same training with optax under jax.jit: the params after each step."""
    params, state = dict(PARAMS), tx.init(dict(PARAMS))

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss)(params, X, Y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    history = []
    for _ in range(steps):
        params, state = step(params, state)
        history.append(jax.tree.map(np.asarray, params))
    return history


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_trains_as_optax_under_jax_jit(name):
    opt = fj.optim.Optimizer(TRANSFORMS[name]())
    params = {k: fj.Variable(v, name=k) for k, v in PARAMS.items()}

    @fj.compile
    def step(x, y):
        return opt.minimize(lambda: loss(params, x, y), params)  # (a dict, as optax sees it)

    for want in jax_run(TRANSFORMS[name](), 8):
        step(X, Y)
        for k in PARAMS:
            np.testing.assert_allclose(np.asarray(params[k]), want[k], rtol=1e-5, atol=1e-6)
    assert step.cache_info().traces == 1


def test_the_state_is_optax_state_of_variables_and_restores_with_the_model(tmp_path):
    opt = fj.optim.AdamW(0.05)
    w = fj.Variable(PARAMS["w"], name="w")
    b = fj.Variable(PARAMS["b"], name="b")

    @fj.compile
    def step(x, y):
        opt.minimize(lambda: loss({"w": w, "b": b}, x, y), [w, b])

    step(X, Y)
    state = opt.state([w, b])
    adam = state[0]  # optax.adamw = chain(scale_by_adam, add_decayed_weights, scale_by_lr)
    assert isinstance(adam, optax.ScaleByAdamState)
    assert int(np.asarray(adam.count)) == 1  # one step count for both variables
    assert [v.name for v in adam.mu] == ["w/mu", "b/mu"]
    assert set(opt.slots(w)) == {"mu", "nu", "count"}
    saved = [w, b, *opt.variables()]
    fj.save(tmp_path / "ckpt", saved)
    step(X, Y)
    step(X, Y)
    after_two = [np.asarray(v) for v in (w, b)]
    fj.restore(tmp_path / "ckpt", saved)
    assert int(np.asarray(adam.count)) == 1
    step(X, Y)
    step(X, Y)
    for v, want in zip((w, b), after_two):
        np.testing.assert_array_equal(np.asarray(v), want)


def test_adamw_defaults_are_optax_s():
    opt = fj.optim.AdamW(0.1)
    w = fj.Variable(np.ones(3, np.float32), name="w")
    g = np.array([0.5, -1.0, 2.0], np.float32)
    opt.apply([g], [w])
    tx = optax.adamw(0.1)
    updates, _ = tx.update([jnp.asarray(g)], tx.init([jnp.ones(3)]), [jnp.ones(3)])
    np.testing.assert_allclose(np.asarray(w), 1 + np.asarray(updates[0]), rtol=1e-6)


def test_anything_but_a_gradient_transformation_is_an_argument_error():
    with pytest.raises(fj.ArgumentError, match="optax GradientTransformation"):
        fj.optim.Optimizer(fnp.ones)


def test_state_variables_have_distinct_names_in_any_chain():
    w, b = fj.Variable(PARAMS["w"], name="w"), fj.Variable(PARAMS["b"], name="b")
    tx = optax.chain(optax.trace(0.9), optax.trace(0.5), optax.adamw(SCHEDULE))
    opt = fj.optim.Optimizer(tx)
    opt.state([w, b])
    names = [v.name for v in opt.variables()]
    assert len(set(names)) == len(names) == 10, names
    assert {"w/0/trace", "w/1/trace", "w/mu", "b/nu"} <= set(names)
