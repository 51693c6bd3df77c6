"""Every op family; importing this package registers every op in ``ir.core.OPS``."""

from . import (
    bits,
    control,
    creation,
    custom,
    elementwise,
    host,
    index,
    jax_call,
    linalg,
    nn,
    reduce,
    remat,
    shape,
    sharding,
    sort,
    state,
)  # noqa: F401
