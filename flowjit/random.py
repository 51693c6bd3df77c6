"""``fj.random``: counter-based random numbers (API.md, section 7).

g = fj.random.Generator(0)

@fj.compile
def noisy(x):
    return x + 0.1 * g.normal(x.shape)
"""

from flowjit.compiler.random_api import Generator, threefry2x32

__all__ = ["Generator", "threefry2x32"]
