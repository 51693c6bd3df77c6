"""Every op family; importing this package registers every op in ``ir.core.OPS``."""

from . import bits, creation, elementwise, index, linalg, nn, reduce, shape, sort, state  # noqa: F401
