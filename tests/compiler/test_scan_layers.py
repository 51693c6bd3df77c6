"""fj.nn.ScanLayers: stacked layers run by fj.scan give the values and gradients of the same
layers run one after another, with and without remat; paths and errors."""

from __future__ import annotations

import numpy as np
import pytest

import flowjit as fj


class Block(fj.Module):
    def __init__(self, rng):
        self.norm = fj.nn.LayerNorm(8)
        self.mlp = fj.nn.MLP(16, in_features=8, rng=rng)

    def __call__(self, x, *, scale=1.0):
        return x + scale * self.mlp(self.norm(x))


def _unrolled(stacked, x, scale):
    """The stacked layers applied one after another (per_layer runs them unrolled, each on
    its slices)."""
    return stacked(x, scale=scale, per_layer=[{}] * stacked.length)


@pytest.mark.parametrize("remat", [False, True])
def test_scan_equals_unrolled_layers_and_their_gradients(remat):
    rng = fj.random.Generator(0)  # (one stream for all layers: each draws its own values)
    layers = fj.nn.ScanLayers(lambda: Block(rng), 3, remat=remat)
    assert list(layers.named_variables()) == [
        "norm/scale", "norm/bias", "mlp/up/kernel", "mlp/up/bias", "mlp/down/kernel",
        "mlp/down/bias",
    ]  # fmt: skip
    assert layers.named_variables()["mlp/up/kernel"].shape == (3, 8, 16)
    kernels = np.asarray(layers.named_variables()["mlp/up/kernel"].value)
    assert not np.array_equal(kernels[0], kernels[1])  # (each layer drew its own values)
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype(np.float32)

    def loss_and_grads(run):
        @fj.compile
        def f(x):
            loss = (run(x) ** 2).mean()
            return loss, fj.gradients(loss, layers.variables)

        return f(x)

    scanned = loss_and_grads(lambda x: layers(x, scale=0.5))
    unrolled = loss_and_grads(lambda x: _unrolled(layers, x, 0.5))
    np.testing.assert_allclose(scanned[0], unrolled[0], rtol=1e-6)
    for a, b in zip(scanned[1], unrolled[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_paths_under_a_model_and_errors():
    class Net(fj.Module):
        def __init__(self):
            self.blocks = fj.nn.ScanLayers(lambda: Block(1), 2)

    assert list(Net().named_variables())[:2] == ["blocks/norm/scale", "blocks/norm/bias"]
    assert Net().variables[0].name == "blocks/norm/scale"
    with pytest.raises(fj.ArgumentError, match="has no variables yet") as err:
        fj.nn.ScanLayers(lambda: fj.nn.LayerNorm(), 2)
    assert "test_scan_layers.py" in str(err.value)
    sizes = iter([8, 4])
    with pytest.raises(fj.ArgumentError, match="other variables than layer 0"):
        fj.nn.ScanLayers(lambda: fj.nn.LayerNorm(next(sizes)), 2)
