"""``fj.random``: counter-based random numbers written with flowjit's own ops (API.md, section 7).

A ``Generator`` keeps its whole state in one ``fj.Variable`` of four uint32 words,
``[key0, key1, counter_lo, counter_hi]``. Block ``i`` of its stream is
``threefry2x32(key, counter=i)``: two uint32 words, the 64-bit counter split low word first. A
draw consumes the next blocks ``[c, c + m)`` and advances the counter by ``m``, so a draw is a
pure function of the state, and because threefry is built from integer adds, xors and shifts,
every backend produces the same bits. A draw of ``n`` numbers takes ``m = n`` blocks when each
number needs 64 bits (float64 draws, ``integers``) and ``m = ceil(n / 2)`` blocks otherwise
(the ``y0`` words of all blocks, then their ``y1`` words). ``normal`` draws ``n`` rounded up to
even uniforms and turns each pair into two numbers.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import DTypeError, ShapeError
from flowjit.ir.ops import bits as B
from flowjit.ir.ops.rules import broadcast_shapes
from flowjit.ir.types import FLOAT_DTYPES, bfloat16, dtype_name

from . import numpy_api as fnp
from .dtypes import canonical_dtype
from .location import user_location
from .trace import emit, tracing

U32 = np.dtype(np.uint32)
U64 = np.dtype(np.uint64)
I32 = np.dtype(np.int32)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)

# Threefry-2x32, 20 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11;
# the Random123 library and jax's threefry2x32): rotation constants of the even and odd groups
# of four rounds, and the key-schedule parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA

# Explicit mantissa bits of the float dtypes a uniform is made in.
_MANTISSA_BITS = {np.dtype(np.float16): 10, bfloat16: 7, F32: 23, F64: 52}


# -- bit helpers -----------------------------------------------------------------------------
def _shift(opdef, x, amount: int):
    return emit(opdef, [x, fnp.asarray(amount, x.dtype)])


def _bitcast(x, dtype: np.dtype):
    return emit(B.bitcast_convert, [x], dtype=np.dtype(dtype))


def rotate_left(x, amount: int):
    """``x`` rotated left by ``amount`` (0 < amount < 32) bits; ``x`` a uint32 Tensor."""
    return _shift(B.shift_left, x, amount) | _shift(B.shift_right_logical, x, 32 - amount)


def threefry2x32(k0: Any, k1: Any, x0: Any, x1: Any) -> tuple[Any, Any]:
    """The Threefry-2x32 block cipher with 20 rounds: encrypts the 64-bit blocks ``(x0, x1)``
    under the key ``(k0, k1)``, bit for bit as jax's ``threefry2x32_p`` and Random123 do.

    Operands are uint32 Tensors (or arrays) broadcast together; uint32 arithmetic wraps. Works
    inside a compiled function; returns the two output words."""
    k0, k1, x0, x1 = (fnp.asarray(v) for v in (k0, k1, x0, x1))
    for name, v in zip(("k0", "k1", "x0", "x1"), (k0, k1, x0, x1)):
        if v.dtype != U32:
            raise DTypeError(
                f"{name} has dtype {dtype_name(v.dtype)}; threefry2x32 works on uint32 words",
                op="threefry2x32",
                loc=user_location(),
            )
    keys = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + keys[0], x1 + keys[1]
    for group in range(5):
        for rotation in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = rotate_left(x1, rotation) ^ x0
        # key injection: the key schedule rotates through the three words, plus the group count
        x0 = x0 + keys[(group + 1) % 3]
        x1 = x1 + keys[(group + 2) % 3] + (group + 1)
    return x0, x1


# -- the stream -------------------------------------------------------------------------------
def seed_key(seed: int) -> tuple[int, int]:
    """The key of an integer seed, as jax derives it: the seed's 64 bits (two's complement for a
    negative seed), high word first."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"a generator's seed must be an int, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"a generator's seed must fit in 64 bits, got {seed}")
    seed %= 2**64
    return seed >> 32, seed & 0xFFFFFFFF


def initial_state(seed: int) -> np.ndarray:
    """A generator's state for ``seed``: its key and a zero counter."""
    return np.array([*seed_key(seed), 0, 0], U32)


def _blocks(state, n: int) -> tuple[Any, Any, Any]:
    """Blocks ``[c, c + n)`` of the stream of ``state`` (a uint32[4] Tensor): their two words
    (uint32[n] each) and the state with the counter advanced by ``n``."""
    if n >= 2**32:
        raise ValueError(f"a single draw may use at most 2**32 - 1 blocks, not {n}")
    k0, k1, lo, hi = (state[i] for i in range(4))
    # the 64-bit counter c + i as two words: a wrapped low word carries into the high one
    x0 = lo + fnp.arange(n, dtype=U32)
    x1 = hi + (x0 < lo).astype(U32)
    y0, y1 = threefry2x32(k0, k1, x0, x1)
    new_lo = lo + n
    new_hi = hi + (new_lo < lo).astype(U32)
    return y0, y1, fnp.stack([k0, k1, new_lo, new_hi])


def _words(state, n: int) -> tuple[Any, Any]:
    """``n`` uint32 words: the y0 words of ceil(n / 2) blocks, then their y1 words."""
    y0, y1, state = _blocks(state, -(-n // 2))
    words = fnp.concatenate([y0, y1])
    return (words if words.shape[0] == n else words[:n]), state


def _grid(state, n: int, dtype: np.dtype) -> tuple[Any, Any]:
    """``n`` random integers ``k < 2**p``, p being ``dtype``'s mantissa bits: uint64 (from one
    block each) for float64, else uint32 (from one word each). ``k * 2**-p`` is then a number
    uniform on [0, 1) that is exact in ``dtype``."""
    p = _MANTISSA_BITS[dtype]
    if dtype == F64:
        y0, y1, state = _blocks(state, n)
        bits = _shift(B.shift_left, y0.astype(U64), 32) | y1.astype(U64)
        return _shift(B.shift_right_logical, bits, 64 - p), state
    words, state = _words(state, n)
    return _shift(B.shift_right_logical, words, 32 - p), state


def _fraction(k, q: int):
    """``k * 2**-q`` for integers ``k < 2**q``, as float32 (uint32 ``k``) or float64 (uint64):
    the bits of ``k`` under the exponent of 1.0 make a float in [1, 2); minus 1 (exact)."""
    if k.dtype == U64:
        return _bitcast(_shift(B.shift_left, k, 52 - q) | 0x3FF0000000000000, F64) - 1.0
    return _bitcast(_shift(B.shift_left, k, 23 - q) | 0x3F800000, F32) - 1.0


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return F64 if dtype == F64 else F32


def _split(x: float, bits: int) -> tuple[float, float]:
    """``x`` as ``head + tail``, ``head`` rounded to ``bits`` significant bits (both exact)."""
    mantissa, exponent = math.frexp(x)
    head = math.ldexp(round(math.ldexp(mantissa, bits)), exponent - bits)
    return head, x - head


# -- the distributions: pure functions (state, ...) -> (numbers, new state) ----------------------
def uniform(state, shape: tuple[int, ...], dtype: np.dtype, low: float, high: float):
    """Floats uniform on [low, high) in ``dtype``: ``low + width * u`` for ``u`` on ``dtype``'s
    grid in [0, 1), computed in float32 (float64 for float64), rounded to ``dtype`` and kept in
    [low, high).

    XLA contracts a multiply and an add into one fused multiply-add, numpy does not, so the
    product is computed in halves whose products are all exact (``width`` and ``u`` split at
    half the significand): then every backend rounds the same sums the same way."""
    k, state = _grid(state, math.prod(shape), dtype)
    if (low, high) == (0.0, 1.0):
        values = _fraction(k, _MANTISSA_BITS[dtype])
    else:
        values = _affine(k, _MANTISSA_BITS[dtype], low, high, _compute_dtype(dtype))
    values = fnp.astype(values, dtype)
    low_d = np.asarray(low, dtype)
    below_high = np.nextafter(np.asarray(high, dtype), low_d)
    values = fnp.minimum(fnp.maximum(values, low_d), below_high)
    return fnp.reshape(values, shape), state


def _affine(k, p: int, low: float, high: float, compute: np.dtype):
    """``low + (high - low) * k * 2**-p`` in ``compute`` with only exact products."""
    significand = np.finfo(compute).nmant + 1  # 24 or 53 bits
    half = significand // 2
    head_bits = min(p, half)
    u_head = _fraction(_shift(B.shift_right_logical, k, p - head_bits), head_bits)
    w_head, w_tail = (
        np.asarray(w, compute)
        for w in _split(float(np.asarray(high - low, compute)), significand - half)
    )
    # w_head has significand - half bits, w_tail at most half, u_head at most half: exact
    values = w_head * u_head + w_tail * u_head
    if p > head_bits:
        tail_bits = p - head_bits  # at most significand - 1 - half
        u_tail = _fraction(k & ((1 << tail_bits) - 1), tail_bits) * 2.0**-head_bits
        values = values + (w_head * u_tail + w_tail * u_tail)
    return values + np.asarray(low, compute)


def normal(state, shape: tuple[int, ...], dtype: np.dtype):
    """Standard normal floats by the Box-Muller transform, computed in float32 (float64 for
    float64) and rounded to ``dtype``. Each pair of uniforms (u1, u2) gives two numbers,
    r cos(t) and r sin(t) with r = sqrt(-2 log1p(-u1)) and t = 2 pi u2; the float32 grid of u1
    bounds |x| by sqrt(2 * 23 * log 2) ~ 5.6 (float64: ~ 8.5)."""
    n = math.prod(shape)
    pairs = -(-n // 2)
    compute = _compute_dtype(dtype)
    k, state = _grid(state, 2 * pairs, compute)
    unit = _fraction(k, _MANTISSA_BITS[compute])
    u1, u2 = unit[:pairs], unit[pairs:]
    # log1p(-u1), not log(1 - u1): XLA's float32 log is off by up to 4 ulp near 1
    radius = fnp.sqrt(-2.0 * fnp.log1p(-u1))
    angle = (2 * math.pi) * u2
    values = fnp.concatenate([radius * fnp.cos(angle), radius * fnp.sin(angle)])
    values = values if values.shape[0] == n else values[:n]
    return fnp.reshape(fnp.astype(values, dtype), shape), state


def bernoulli(state, shape: tuple[int, ...], p: Any):
    """Booleans that are True with probability ``p``: a float32 uniform below ``p`` (so ``p``
    counts in steps of 2**-23). ``p`` is a number or a float Tensor broadcast to ``shape``."""
    k, state = _grid(state, math.prod(shape), F32)
    return fnp.less(fnp.reshape(_fraction(k, _MANTISSA_BITS[F32]), shape), p), state


def _high_word(a, b: int):
    """The high 32 bits of the 64-bit products ``a * b``, ``a`` a uint32 Tensor and ``b`` an int
    below 2**32, in uint32 arithmetic (no 64-bit type, which jax has only with x64 on): the
    product of the 16-bit halves, ``a1 b1 2**32 + (a1 b0 + a0 b1) 2**16 + a0 b0``, each partial
    product below 2**32, with the carries of the middle column added up in ``middle``."""
    half = functools.partial(_shift, B.shift_right_logical, amount=16)  # (x >> 16)
    a0, a1 = a & 0xFFFF, half(a)
    b0, b1 = np.uint32(b & 0xFFFF), np.uint32(b >> 16)
    cross0, cross1 = a0 * b1, a1 * b0
    middle = half(a0 * b0) + (cross0 & 0xFFFF) + (cross1 & 0xFFFF)  # (below 3 * 2**16)
    return a1 * b1 + half(cross0) + half(cross1) + half(middle)


def integers(state, shape: tuple[int, ...], low: int, high: int):
    """int32 uniform on [low, high): ``floor(X * R / 2**64)`` for a 64-bit random X and the
    range R = high - low <= 2**32 (the multiply-high method, in uint32 words). Each value has
    probability within a relative R / 2**64 <= 2**-32 of 1 / R: no modulo bias worth the name."""
    y0, y1, state = _blocks(state, math.prod(shape))
    span = high - low
    if span == 2**32:  # X * 2**32 / 2**64 = y0 + y1 / 2**32
        offset = y0
    else:
        # X = y0 2**32 + y1, so floor(X R / 2**64) = floor((y0 R + floor(y1 R / 2**32)) / 2**32):
        # the high word of y0 R, plus the carry out of adding y1 R's high word to y0 R's low
        # word (uint32 products and sums wrap to the low word)
        low_word = y0 * np.uint32(span)
        total = low_word + _high_word(y1, span)
        offset = _high_word(y0, span) + (total < low_word).astype(U32)
    # low + offset lies in int32; uint32 addition wraps to its bits
    values = _bitcast(offset + np.uint32(low % 2**32), I32)
    return fnp.reshape(values, shape), state


# -- Generator -----------------------------------------------------------------------------------
def _check_shape(shape: Any, method: str) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = None
    if dims is None or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) for d in dims
    ):
        raise ShapeError(
            f"shape must be an int or a tuple of ints, got {shape!r}",
            op=f"Generator.{method}",
            loc=user_location(),
        )
    if any(d < 0 for d in dims):
        raise ShapeError(
            f"shape {tuple(dims)} has a negative dimension",
            op=f"Generator.{method}",
            loc=user_location(),
        )
    return tuple(int(d) for d in dims)


def _check_float_dtype(dtype: Any, method: str) -> np.dtype:
    try:
        canonical = canonical_dtype(dtype)
    except TypeError:
        canonical = None
    if canonical not in FLOAT_DTYPES:
        names = ", ".join(dtype_name(d) for d in FLOAT_DTYPES)
        raise DTypeError(
            f"dtype {dtype!r} is not a float dtype; {method} draws one of {names}",
            op=f"Generator.{method}",
            loc=user_location(),
        )
    return canonical


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


class Generator:
    """A counter-based random number generator (API.md, section 7).

    ``Generator(seed)`` keeps its state in one ``fj.Variable`` (``g.state``, uint32[4]: the key
    derived from ``seed`` and a 64-bit counter). Draws work inside compiled functions (reading
    and advancing the state in program order) and outside them (each draw then runs as a small
    compiled function). Generators with the same seed give the same numbers on every backend.
    """

    def __init__(self, seed: int, *, name: str = "rng"):
        from .variable import Variable

        state = initial_state(seed)  # checks the seed
        self.seed = int(seed)
        self.state = Variable(state, name=name, trainable=False)
        self._eager: dict[tuple, Callable] = {}

    def __repr__(self) -> str:
        return f"Generator(seed={self.seed}, state={self.state.name!r})"

    def normal(self, shape: Any, dtype: Any = F32):
        """Standard normal numbers of ``shape`` and float ``dtype``."""
        return self._draw(
            normal, _check_shape(shape, "normal"), _check_float_dtype(dtype, "normal")
        )

    def uniform(self, shape: Any, low: float = 0.0, high: float = 1.0, *, dtype: Any = F32):
        """Numbers uniform on [low, high) of ``shape`` and float ``dtype``; ``low`` and ``high``
        are Python numbers (for traced bounds, scale a draw on [0, 1))."""
        shape = _check_shape(shape, "uniform")
        dtype = _check_float_dtype(dtype, "uniform")
        if not (_is_number(low) and _is_number(high)):
            raise TypeError(
                f"Generator.uniform: low and high must be numbers, got {type(low).__name__} and "
                f"{type(high).__name__}; for traced bounds use low + (high - low) * "
                "g.uniform(shape)"
            )
        with np.errstate(over="ignore"):
            low_d, high_d = np.asarray(low, dtype), np.asarray(high, dtype)
            width = np.asarray(float(high) - float(low), _compute_dtype(dtype))
        if not (np.isfinite(low_d) and np.isfinite(high_d) and np.isfinite(width)):
            raise ValueError(
                f"Generator.uniform: the range [{low}, {high}) is not finite in "
                f"{dtype_name(dtype)}; narrow it or use a wider dtype"
            )
        if not low_d < high_d:
            raise ValueError(
                f"Generator.uniform: needs low < high in {dtype_name(dtype)}, got low={low}, "
                f"high={high}"
            )
        return self._draw(uniform, shape, dtype, float(low), float(high))

    def bernoulli(self, p: Any, shape: Any):
        """Booleans of ``shape``, each True with probability ``p`` (a number in [0, 1], or a
        float array or Tensor that broadcasts to ``shape``)."""
        shape = _check_shape(shape, "bernoulli")
        if _is_number(p):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"Generator.bernoulli: p must be in [0, 1], got {p}")
            return self._draw(bernoulli, shape, float(p))
        return self._draw(_bernoulli_array, shape, operands=(p,))

    def integers(self, low: int, high: int, shape: Any):
        """int32 numbers of ``shape`` uniform on [low, high) (Python ints, int32 bounds)."""
        shape = _check_shape(shape, "integers")
        for name, bound in (("low", low), ("high", high)):
            if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, (int, np.integer)):
                raise TypeError(
                    f"Generator.integers: {name} must be an int, got {type(bound).__name__}"
                )
        low, high = int(low), int(high)
        if not high > low:
            raise ValueError(f"Generator.integers: needs low < high, got low={low}, high={high}")
        if low < -(2**31) or high > 2**31:
            raise ValueError(
                f"Generator.integers: [{low}, {high}) is outside int32's range "
                f"[-2**31, 2**31); integers draws int32"
            )
        return self._draw(integers, shape, low, high)

    def key(self):
        """A fresh ``jax.random`` key (raw, uint32[2], as ``jax.random.PRNGKey`` gives) from the
        generator's stream, for jax code: ``fj.from_jax(f)(g.key(), x)``. Each call takes the
        next block of the stream, so stateful draws and key-based jax code mix."""
        return self._draw(_key)

    def __getattr__(self, name: str) -> Any:
        """Every other ``jax.random`` distribution, drawn with a fresh key: ``g.categorical(
        logits)`` is ``jax.random.categorical(g.key(), logits)``, through ``fj.from_jax``."""
        found = getattr(jax.random, name, None)
        if name.startswith("_") or not callable(found) or name in _NOT_DISTRIBUTIONS:
            raise AttributeError(
                f"Generator has no attribute {name!r}"
                + ("" if found is None else "; jax.random's is not a distribution")
            )
        from .from_jax import from_jax

        draw = from_jax(found, name=f"jax.random.{name}")
        return functools.wraps(found)(lambda *args, **kwargs: draw(self.key(), *args, **kwargs))

    # -- running a draw ----------------------------------------------------------------------
    def _draw(self, sampler: Callable, *statics: Any, operands: tuple = ()) -> Any:
        """Run ``sampler(state, *statics, *operands)``: in the current trace, or outside one as
        a compiled function (one per sampler and static arguments, traced once)."""
        if tracing():
            return self._sample(sampler, statics, *operands)
        key = (sampler, statics)
        compiled = self._eager.get(key)
        if compiled is None:
            from .api import compile

            name = f"{self.state.name}.{getattr(sampler, '__name__', 'draw')}"
            compiled = compile(functools.partial(self._sample, sampler, statics), name=name)
            self._eager[key] = compiled
        return compiled(*operands)

    def _sample(self, sampler: Callable, statics: tuple, *operands: Any) -> Any:
        values, new_state = sampler(self.state.read(), *statics, *operands)
        self.state.assign(new_state)
        return values


# jax.random's names that take no key first, or are not draws
_NOT_DISTRIBUTIONS = frozenset(
    {
        "key",
        "PRNGKey",
        "split",
        "fold_in",
        "key_data",
        "wrap_key_data",
        "key_impl",
        "clone",
        "Key",
        "key_dtype",
        "random_gamma_p",
        "default_prng_impl",
        "threefry_2x32",
        "threefry2x32_key",
        "rbg_key",
        "unsafe_rbg_key",
    }
)


def _key(state):
    """A raw jax.random key: the two words of the stream's next block."""
    y0, y1, new_state = _blocks(state, 1)
    return fnp.concatenate([y0, y1]), new_state


def _bernoulli_array(state, shape: tuple[int, ...], p: Any):
    """bernoulli with an array or Tensor of probabilities (not checked to lie in [0, 1])."""
    p = fnp.asarray(p)
    if p.dtype not in FLOAT_DTYPES:
        raise DTypeError(
            f"p has dtype {dtype_name(p.dtype)}; bernoulli takes float probabilities",
            op="Generator.bernoulli",
            loc=user_location(),
        )
    try:
        fits = broadcast_shapes(p.shape, shape) == shape
    except ShapeError:
        fits = False
    if not fits:
        raise ShapeError(
            f"p of shape {p.shape} does not broadcast to the draw's shape {shape}",
            op="Generator.bernoulli",
            loc=user_location(),
        )
    return bernoulli(state, shape, fnp.astype(p, F32))
