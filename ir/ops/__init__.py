"""Every op family; importing this package registers every op in ``ir.core.OPS``."""

from . import creation, elementwise, index, linalg, nn, reduce, shape, sort  # noqa: F401
