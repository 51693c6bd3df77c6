"""A flax transformer and optax AdamW + warmup-cosine + global-norm clipping (issue 22, items
5 and 6), trained 20 steps inside fj.compile through fj.from_jax, give the losses the same code
gives under jax.jit (float32, rtol 1e-5); and the same after a checkpoint restored midway.
The model and the training are examples/flax_port.py's."""

from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np

import flowjit as fj

sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / "examples"))
import flax_port as port

STEPS = 20


def test_flax_and_optax_train_as_under_jax_jit_and_resume_from_a_checkpoint(tmp_path):
    model, data = port.GPT(layers=1), port.batches(STEPS)
    params = model.init(jax.random.key(0), data[0][0])["params"]
    want = port.train_jax(model, params, data)

    variables, opt, step = port.flowjit_trainer(model, params, STEPS)
    got = []
    for i, (x, y) in enumerate(data):
        got.append(float(step(x, y)))
        if i == STEPS // 2 - 1:  # midway: save everything a resumed run needs
            saved = [*jax.tree_util.tree_leaves(variables), *opt.variables()]
            fj.save(tmp_path / "midway", saved)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert step.cache_info().traces == 1

    fj.restore(tmp_path / "midway", saved)  # the same Variables, back to step 10
    resumed = [float(step(x, y)) for x, y in data[STEPS // 2 :]]
    np.testing.assert_allclose(resumed, want[STEPS // 2 :], rtol=1e-5)
    # the parameters are back in flax's form, and give jax's loss
    trained = jax.tree.map(lambda v: v.value, variables)
    x, y = data[-1]
    assert abs(float(port.loss_fn(model, trained, x, y)) - float(step(x, y))) < 1e-5 * 10


def test_an_nnx_module_runs_split_with_its_state_in_variables():
    """flax.nnx: ``nnx.split`` gives the module's graph and its state (a pytree), held in
    Variables; ``nnx.merge`` inside the imported function puts them together again."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(4, 8, rngs=rngs)
            self.out = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    model = MLP(nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    variables = port.as_variables(state)
    apply = fj.from_jax(lambda state, x: nnx.merge(graphdef, state)(x))
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)

    @fj.compile
    def step(x):
        out = apply(variables, x)
        leaves = jax.tree_util.tree_leaves(variables)
        return out, fj.gradients((out**2).sum(), leaves)

    out, grads = step(x)
    np.testing.assert_allclose(out, model(x), rtol=1e-6)
    def loss(s):
        return (nnx.merge(graphdef, s)(x) ** 2).sum()

    want = jax.tree_util.tree_leaves(jax.grad(loss)(state))
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
