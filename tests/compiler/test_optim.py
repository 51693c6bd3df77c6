"""fj.optim against numpy implementations of optax's update rules: ten steps on a small
least-squares problem, slots created once, and clip_by_global_norm."""

from __future__ import annotations

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 3)).astype(np.float32)
Y = RNG.standard_normal((8, 2)).astype(np.float32)
W0 = RNG.standard_normal((3, 2)).astype(np.float32)
B0 = RNG.standard_normal((2,)).astype(np.float32)


def loss_and_grads_numpy(w, b):
    """mean((x w + b - y)^2) and its gradients, in float64."""
    x, y = X.astype(np.float64), Y.astype(np.float64)
    r = x @ w + b - y
    scale = 2 / r.size
    return np.mean(r * r), [x.T @ r * scale, r.sum(0) * scale]


def sgd_numpy(lr, momentum=0.0, nesterov=False):
    traces = None

    def update(params, grads):
        nonlocal traces
        if momentum:
            traces = [g + momentum * t for g, t in zip(grads, traces or [0 * g for g in grads])]
            updates = [g + momentum * t for g, t in zip(grads, traces)] if nesterov else traces
        else:
            updates = grads
        return [p - lr * u for p, u in zip(params, updates)]

    return update


def adam_numpy(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    state = {"m": None, "v": None, "t": 0}

    def update(params, grads):
        zeros = [0 * g for g in grads]
        state["m"] = [b1 * m + (1 - b1) * g for m, g in zip(state["m"] or zeros, grads)]
        state["v"] = [b2 * v + (1 - b2) * g * g for v, g in zip(state["v"] or zeros, grads)]
        state["t"] += 1
        t = state["t"]
        out = []
        for p, m, v in zip(params, state["m"], state["v"]):
            u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + weight_decay * p
            out.append(p - lr * u)
        return out

    return update


OPTIMIZERS = {
    "sgd": (lambda: fj.optim.SGD(0.1), lambda: sgd_numpy(0.1)),
    "momentum": (lambda: fj.optim.SGD(0.05, momentum=0.9), lambda: sgd_numpy(0.05, 0.9)),
    "nesterov": (
        lambda: fj.optim.SGD(0.05, momentum=0.9, nesterov=True),
        lambda: sgd_numpy(0.05, 0.9, True),
    ),
    "adam": (lambda: fj.optim.Adam(0.05), lambda: adam_numpy(0.05)),
    "adamw": (
        lambda: fj.optim.AdamW(0.05, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
        lambda: adam_numpy(0.05, 0.8, 0.99, 1e-6, 0.1),
    ),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_ten_steps_match_optax_rules(name):
    make_opt, make_numpy = OPTIMIZERS[name]
    opt, reference = make_opt(), make_numpy()
    w, b = fj.Variable(W0, name="w"), fj.Variable(B0, name="b")

    @fj.compile
    def step(x, y):
        return opt.minimize(lambda: fnp.mean((x @ w + b - y) ** 2), [w, b])

    params = [W0.astype(np.float64), B0.astype(np.float64)]
    for _ in range(10):
        want_loss, grads = loss_and_grads_numpy(*params)
        loss = step(X, Y)
        np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
        params = reference(params, grads)
        np.testing.assert_allclose(np.asarray(w), params[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(b), params[1], rtol=1e-5, atol=1e-6)
    assert step.cache_info().traces == 1
    slots = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 3, "adamw": 3}[name]
    assert [len(opt.slots(v)) for v in (w, b)] == [slots, slots]
    # one optax state for the two variables, made on the first trace: a leaf per variable
    # for each moment (and the step count shared by both, for Adam)
    count = {"sgd": 0, "momentum": 2, "nesterov": 2, "adam": 5, "adamw": 5}[name]
    assert len(opt.variables()) == count


def test_apply_with_explicit_gradients_and_eager_apply():
    opt = fj.optim.Adam(0.1)
    w = fj.Variable(np.ones(3, np.float32), name="w")

    @fj.compile
    def step(g):
        opt.apply([g], [w])

    reference = adam_numpy(0.1)
    params = [np.ones(3)]
    for k in range(3):
        g = np.array([1.0, -2.0, 0.5], np.float32) * (k + 1)
        step(g) if k < 2 else opt.apply([g], [w])  # the last one outside a compiled function
        params = reference(params, [g.astype(np.float64)])
        np.testing.assert_allclose(np.asarray(w), params[0], rtol=1e-5)
    assert step.cache_info().traces == 1
    assert int(np.asarray(opt.slots(w)["count"])) == 3


def clip_numpy(grads, max_norm):
    norm = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads))
    return [g if norm < max_norm else g / norm * max_norm for g in grads]


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_by_global_norm(max_norm):
    grads = {
        "a": RNG.standard_normal((3, 2)).astype(np.float32),
        "b": RNG.standard_normal(4).astype(np.float32),
    }
    got = fj.compile(lambda g: fj.optim.clip_by_global_norm(g, max_norm))(grads)
    want = clip_numpy([grads["a"], grads["b"]], max_norm)
    np.testing.assert_allclose(np.asarray(got["a"]), want[0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got["b"]), want[1], rtol=1e-5)


def test_apply_rejects_mismatched_gradients():
    opt = fj.optim.SGD(0.1)
    w = fj.Variable(np.ones(3, np.float32), name="w")
    with pytest.raises(fj.ShapeError, match="gradient of variable 'w' has shape"):
        fj.compile(lambda g: opt.apply([g], [w]))(np.ones(2, np.float32))
