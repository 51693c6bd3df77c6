"""``fj.optim``: optimizers that update fj.Variables in place (API.md, section 4).

opt = fj.optim.Adam(1e-3)

@fj.compile
def step(x, y):
    return opt.minimize(lambda: loss(x, y), params)
"""

from flowjit.compiler.optim import (
    SGD,
    Adam,
    AdamW,
    Optimizer,
    clip_by_global_norm,
    from_optax,
)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_by_global_norm", "from_optax"]
