"""``fj.random.Generator``: threefry against jax and Random123, the stream layout against its
definition (computed with jax's threefry), the same numbers on the XLA and reference backends,
moments within statistical bounds, ranges, dtypes, shapes and errors.

Every statistical test uses a fixed seed and bounds of at least 6 standard errors: a correct
generator fails one with probability below 1e-8, and the seed makes the outcome fixed."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p

import flowjit as fj
import flowjit.numpy as fnp

U32 = np.uint32
FLOATS = (fnp.float16, fnp.bfloat16, fnp.float32, fnp.float64)
name_of = lambda d: np.dtype(d).name  # noqa: E731 (pytest ids)


def jax_threefry(k0, k1, x0, x1) -> tuple[np.ndarray, np.ndarray]:
    args = [jax.numpy.asarray(np.asarray(v, U32)) for v in (k0, k1, x0, x1)]
    return tuple(np.asarray(y) for y in threefry2x32_p.bind(*args))


def reference_run(fn, *args) -> tuple[list[np.ndarray], dict]:
    """Run ``fn``'s optimized graph on the reference interpreter with the variables' current
    values (nothing is written back): its results and {variable: new value}."""
    results, new_state = fn.lower(*args).run_reference(*args)
    return jax.tree_util.tree_leaves(results), new_state


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable floats of their dtype lie between ``a`` and ``b``."""

    def ordered(x: np.ndarray) -> np.ndarray:
        width = x.dtype.itemsize
        bits = x.view(f"i{width}").astype(np.int64)
        return np.where(bits < 0, np.int64(np.iinfo(f"i{width}").min) - bits, bits)

    assert a.dtype == b.dtype
    return np.abs(ordered(a) - ordered(b))


def counter(g) -> int:
    lo, hi = np.asarray(g.state.value)[2:]
    return int(hi) << 32 | int(lo)


# -- threefry ----------------------------------------------------------------------------------
# Known answers of Threefry-2x32-20 from the Random123 distribution (kat_vectors), as
# (key, counter) -> output.
KNOWN_ANSWERS = [
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def test_threefry_known_answers():
    f = fj.compile(fj.random.threefry2x32)
    for key, count, expected in KNOWN_ANSWERS:
        got = f(*(np.asarray(v, U32) for v in (*key, *count)))
        assert [int(y) for y in got] == list(expected)


def test_threefry_matches_jax_bit_for_bit_on_both_backends():
    rng = np.random.default_rng(5)
    k0, k1 = rng.integers(0, 2**32, size=2, dtype=U32)
    x0, x1 = rng.integers(0, 2**32, size=(2, 3, 257), dtype=U32)
    # the key broadcasts against the counters
    f = fj.compile(fj.random.threefry2x32)
    want = jax_threefry(np.full(x0.shape, k0), np.full(x0.shape, k1), x0, x1)
    reference, _ = reference_run(f, k0, k1, x0, x1)
    for name, got in (("xla", f(k0, k1, x0, x1)), ("reference", reference)):
        for i in range(2):
            np.testing.assert_array_equal(np.asarray(got[i]), want[i], err_msg=f"{name} y{i}")


def test_threefry_rejects_other_dtypes():
    f = fj.compile(fj.random.threefry2x32)
    with pytest.raises(fj.DTypeError, match="x0 has dtype i32; threefry2x32 works on uint32"):
        f(U32(0), U32(0), np.int32(1), U32(1))


# -- seeds and the stream ------------------------------------------------------------------------
@pytest.mark.x64  # (jax derives the key of a seed beyond int32 from its 64 bits only with x64)
@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 + 7, 2**63 - 1, -1, -(2**63)])
def test_seed_makes_jax_key(seed):
    g = fj.random.Generator(seed)
    want = np.asarray(jax.random.key_data(jax.random.PRNGKey(seed)))
    np.testing.assert_array_equal(np.asarray(g.state.value), [*want, 0, 0])
    assert g.state.dtype == U32 and g.state.shape == (4,)


def stream_blocks(key, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks ``[start, start + n)`` of a stream, by its definition: threefry of the 64-bit
    counter split into (low word, high word)."""
    counters = [start + i for i in range(n)]
    lo = [c % 2**32 for c in counters]
    hi = [c >> 32 for c in counters]
    return jax_threefry(np.full(n, key[0]), np.full(n, key[1]), lo, hi)


@pytest.mark.x64  # (for the float64 draw)
def test_stream_layout_and_counter_carry():
    """Draws follow the documented layout, and the 64-bit counter carries across 2**32."""
    g = fj.random.Generator(9)
    key = [int(k) for k in np.asarray(g.state.value)[:2]]
    start = 2**32 - 3
    g.state.assign(np.array([*key, start % 2**32, start >> 32], U32))
    # float32 uniform of 9 numbers: the y0 words of 5 blocks, then their y1 words
    got = np.asarray(g.uniform((9,)))
    y0, y1 = stream_blocks(key, start, 5)
    words = np.concatenate([y0, y1])[:9]
    want = ((words >> 9) | 0x3F800000).view(np.float32) - np.float32(1)
    np.testing.assert_array_equal(got, want)
    assert counter(g) == start + 5
    # integers: one 64-bit block X per number, low + floor(X * (high - low) / 2**64)
    got = np.asarray(g.integers(-1000, 2**31 - 7, (4,)))
    y0, y1 = stream_blocks(key, start + 5, 4)
    span = 2**31 - 7 + 1000
    want = [-1000 + ((int(a) << 32 | int(b)) * span >> 64) for a, b in zip(y0, y1)]
    np.testing.assert_array_equal(got, np.array(want, np.int32))
    # float64 uniform: the top 52 bits of (y0, y1) as a fraction
    got = np.asarray(g.uniform((3,), dtype=fnp.float64))
    y0, y1 = stream_blocks(key, start + 9, 3)
    want = [(int(a) << 32 | int(b)) >> 12 for a, b in zip(y0, y1)]
    np.testing.assert_array_equal(got, np.array(want, np.float64) * 2.0**-52)
    assert counter(g) == start + 12
    np.testing.assert_array_equal(np.asarray(g.state.value)[:2], key)


def test_normal_is_box_muller_of_the_stream():
    g = fj.random.Generator(3)
    key = [int(k) for k in np.asarray(g.state.value)[:2]]
    got = np.asarray(g.normal((7,)))
    y0, y1 = stream_blocks(key, 0, 4)  # 4 pairs of float32 uniforms
    u1, u2 = ((y >> 9).astype(np.float64) * 2.0**-23 for y in (y0, y1))
    r = np.sqrt(-2 * np.log1p(-u1))
    want = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:7]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert counter(g) == 4


# -- reproducibility ---------------------------------------------------------------------------
def draw_all(g) -> list[np.ndarray]:
    return [
        np.asarray(x)
        for x in (
            g.normal((5,)),
            g.uniform((2, 3), -1.0, 4.0),
            g.bernoulli(0.3, (6,)),
            g.integers(0, 100, (7,)),
            g.normal((3,), dtype=fnp.float64),
        )
    ]


def test_same_seed_same_numbers_eager_and_compiled():
    a, b, c = (fj.random.Generator(1234) for _ in range(3))
    first = draw_all(a)
    for x, y in zip(first, draw_all(b)):
        np.testing.assert_array_equal(x, y)
    # the same draws inside a compiled function continue the same stream
    compiled = fj.compile(lambda: draw_all_traced(c))
    for x, y in zip(first, compiled()):
        np.testing.assert_array_equal(x, np.asarray(y))
    for x, y in zip(draw_all(a), compiled()):
        np.testing.assert_array_equal(x, np.asarray(y))
    np.testing.assert_array_equal(np.asarray(a.state.value), np.asarray(c.state.value))


def draw_all_traced(g) -> tuple:
    return (
        g.normal((5,)),
        g.uniform((2, 3), -1.0, 4.0),
        g.bernoulli(0.3, (6,)),
        g.integers(0, 100, (7,)),
        g.normal((3,), dtype=fnp.float64),
    )


def test_different_seeds_and_successive_draws_differ():
    a, b = fj.random.Generator(0), fj.random.Generator(1)
    x, y = np.asarray(a.uniform((100,))), np.asarray(b.uniform((100,)))
    assert not np.any(x == y)
    assert not np.any(x == np.asarray(a.uniform((100,))))
    assert counter(a) == 100  # two draws of 50 blocks


def test_compiled_draws_advance_the_state_each_call():
    g = fj.random.Generator(7)

    @fj.compile
    def step(x):
        return x + g.normal(x.shape), g.uniform(x.shape)

    x = np.zeros(6, np.float32)
    n1, u1 = step(x)
    assert counter(g) == 6  # 3 blocks for 6 normals (3 pairs), 3 for 6 uniforms
    n2, u2 = step(x)
    assert counter(g) == 12
    assert not np.any(np.asarray(n1) == np.asarray(n2))
    assert not np.any(np.asarray(u1) == np.asarray(u2))
    assert step.cache_info().traces == 1


def test_draws_in_one_function_follow_program_order():
    g, h = fj.random.Generator(11), fj.random.Generator(11)
    first, second = fj.compile(lambda: (g.integers(0, 10, (20,)), g.integers(0, 10, (20,))))()
    np.testing.assert_array_equal(np.asarray(first), np.asarray(h.integers(0, 10, (20,))))
    np.testing.assert_array_equal(np.asarray(second), np.asarray(h.integers(0, 10, (20,))))


def test_empty_draws_use_no_counter():
    g = fj.random.Generator(0)
    assert np.asarray(g.normal((0, 3))).shape == (0, 3)
    assert np.asarray(g.integers(0, 2, 0)).shape == (0,)
    assert counter(g) == 0


# -- the same numbers on both backends ------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS, ids=name_of)
def test_same_numbers_on_xla_and_reference(dtype):
    """Bits, uniforms and bernoullis are equal; normals (log1p, sqrt, cos, sin of XLA's and
    numpy's own implementations) within a few ulp (measured: float32 3, float64 2, float16 1,
    bfloat16 0)."""
    g = fj.random.Generator(2024)
    fn = fj.compile(
        lambda: (
            g.normal((4001,), dtype=dtype),
            g.uniform((1001,), dtype=dtype),
            g.uniform((1001,), -3.5, 1e3, dtype=dtype),
            g.bernoulli(0.3, (999,)),
            g.integers(-(2**31), 2**31, (1001,)),
            g.integers(-7, 50, (1001,)),
        )
    )
    for _ in range(2):  # the second call starts from an advanced counter
        reference, new_state = reference_run(fn)
        xla = [np.asarray(x) for x in fn()]
        (state_after,) = new_state.values()
        np.testing.assert_array_equal(state_after, np.asarray(g.state.value))
        normal, *exact = zip(reference, xla)
        for i, (r, x) in enumerate(exact):
            assert r.dtype == x.dtype
            np.testing.assert_array_equal(r, x, err_msg=f"output {i + 1}")
        distance = ulp_distance(*normal)
        assert distance.max() <= {2: 1, 4: 3, 8: 2}[np.dtype(dtype).itemsize]
        assert np.mean(distance > 0) < 0.25


# -- moments ---------------------------------------------------------------------------------------
N = 200_000


def within(value: float, expected: float, standard_error: float, what: str) -> None:
    assert abs(value - expected) <= 6 * standard_error, (
        f"{what}: {value} is {abs(value - expected) / standard_error:.1f} standard errors "
        f"from {expected}"
    )


def test_uniform_moments_and_range():
    g = fj.random.Generator(100)
    u = np.asarray(g.uniform((N,)), np.float64)
    within(u.mean(), 0.5, math.sqrt(1 / 12 / N), "mean")
    within(u.var(), 1 / 12, math.sqrt((1 / 80 - 1 / 144) / N), "variance")
    assert u.min() >= 0 and u.max() < 1
    # each tenth of [0, 1) holds a tenth of the numbers
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    for c in counts:
        within(c / N, 0.1, math.sqrt(0.09 / N), "decile")
    low, high = -2.0, 5.0
    v = np.asarray(g.uniform((N,), low, high), np.float64)
    within(v.mean(), 1.5, 7 * math.sqrt(1 / 12 / N), "scaled mean")
    within(v.var(), 49 / 12, 49 * math.sqrt((1 / 80 - 1 / 144) / N), "scaled variance")
    assert v.min() >= low and v.max() < high


def test_normal_moments():
    g = fj.random.Generator(101)
    for dtype in (fnp.float32, fnp.float64):
        z = np.asarray(g.normal((N,), dtype=dtype), np.float64)
        within(z.mean(), 0, math.sqrt(1 / N), "mean")
        within(z.var(), 1, math.sqrt(2 / N), "variance")
        within(np.mean(z**3), 0, math.sqrt(15 / N), "third moment")
        within(np.mean(z**4), 3, math.sqrt(96 / N), "fourth moment")
        # P(|z| < 1) for a standard normal
        p = math.erf(1 / math.sqrt(2))
        within(np.mean(np.abs(z) < 1), p, math.sqrt(p * (1 - p) / N), "P(|z| < 1)")


@pytest.mark.parametrize("p", [0.0, 0.01, 0.3, 0.5, 1.0])
def test_bernoulli_frequency(p):
    b = np.asarray(fj.random.Generator(102).bernoulli(p, (N,)))
    assert b.dtype == np.bool_ and b.shape == (N,)
    within(b.mean(), p, max(math.sqrt(p * (1 - p) / N), 1e-12), "frequency")


def test_bernoulli_with_traced_probabilities():
    g = fj.random.Generator(103)
    p = np.array([[0.0], [0.25], [1.0]], np.float32)
    b = np.asarray(fj.compile(lambda p: g.bernoulli(p, (3, 20_000)))(p))
    assert b.shape == (3, 20_000)
    assert not b[0].any() and b[2].all()
    within(b[1].mean(), 0.25, math.sqrt(0.25 * 0.75 / 20_000), "frequency")
    b = np.asarray(g.bernoulli(p, (3, 4)))  # an array p outside a compiled function
    assert not b[0].any() and b[2].all()


@pytest.mark.parametrize(
    "low, high",
    [(0, 1), (-3, 7), (-1000, 2**31 - 7), (-(2**31), 2**30), (0, 2**32 - 2**31), (-(2**31), 2**31)],
)
def test_integers_are_the_multiply_high_of_64_bits_in_32_bit_words(low, high):
    """With x64 off (the tests' mode), ``integers`` is exactly ``low + floor(X * span / 2**64)``
    for each block's 64 bits X, and its IR has no 64-bit type."""
    g = fj.random.Generator(11)
    key = [int(k) for k in np.asarray(g.state.value)[:2]]
    draw = fj.compile(lambda: g.integers(low, high, (64,)))
    ir_text = draw.lower().ir(stage="traced")
    assert not any(t in ir_text for t in ("i64", "u64", "f64")), ir_text
    got = np.asarray(draw())
    y0, y1 = stream_blocks(key, 0, 64)
    want = [low + ((int(a) << 32 | int(b)) * (high - low) >> 64) for a, b in zip(y0, y1)]
    np.testing.assert_array_equal(got, np.array(want, np.int32))


@pytest.mark.parametrize("low, high", [(-3, 7), (0, 3), (5, 6), (-(2**31), 2**31)])
def test_integers_moments_and_every_value(low, high):
    g = fj.random.Generator(104)
    x = np.asarray(g.integers(low, high, (N,)))
    assert x.dtype == np.int32
    assert x.min() >= low and x.max() < high
    span = high - low
    sd = math.sqrt((span**2 - 1) / 12)
    within(x.astype(np.float64).mean(), (low + high - 1) / 2, sd / math.sqrt(N), "mean")
    if span <= 10:
        counts = np.bincount(x - low, minlength=span)
        assert len(counts) == span and counts.min() > 0  # every value, and no other
        for c in counts:
            within(c / N, 1 / span, math.sqrt((1 / span) * (1 - 1 / span) / N) + 1e-12, "freq")


def test_integers_has_no_visible_modulo_bias():
    # with bits % span, a span of 3 * 2**30 would give the lowest 2**30 values twice the weight
    g = fj.random.Generator(105)
    span = 3 * 2**30
    x = np.asarray(g.integers(-(2**31), -(2**31) + span, (N,))).astype(np.int64) + 2**31
    share = np.mean(x < 2**30)
    within(share, 1 / 3, math.sqrt(2 / 9 / N), "share of the lowest third")


# -- dtypes, ranges and shapes --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS, ids=name_of)
def test_float_dtypes(dtype):
    g = fj.random.Generator(106)
    z = np.asarray(g.normal((20_000,), dtype=dtype))
    assert z.dtype == np.dtype(dtype)
    assert np.isfinite(z.astype(np.float64)).all()
    within(z.astype(np.float64).mean(), 0, math.sqrt(1 / 20_000), "normal mean")
    within(z.astype(np.float64).std(), 1, 0.02, "normal std")
    u = np.asarray(g.uniform((20_000,), dtype=dtype))
    assert u.dtype == np.dtype(dtype)
    assert u.min() >= 0 and u.max() < 1
    within(u.astype(np.float64).mean(), 0.5, math.sqrt(1 / 12 / 20_000), "uniform mean")
    # a wide range, where rounding to a narrow dtype would reach high without the clamp
    v = np.asarray(g.uniform((20_000,), 0.0, 1000.0, dtype=dtype)).astype(np.float64)
    assert v.min() >= 0 and v.max() < 1000


def test_uniform_keeps_below_high_when_rounding_reaches_it():
    g = fj.random.Generator(107)
    v = np.asarray(g.uniform((50_000,), 999.0, 1000.0, dtype=fnp.float16))
    # float16 has steps of 0.5 here: 999.0 and 999.5 only
    assert set(np.unique(v).tolist()) <= {999.0, 999.5}
    assert v.max() < 1000


@pytest.mark.parametrize(
    "shape, expected", [((), ()), (5, (5,)), ((2, 3, 4), (2, 3, 4)), ([3, 1], (3, 1))]
)
def test_shapes(shape, expected):
    g = fj.random.Generator(108)
    for x in (
        g.normal(shape),
        g.uniform(shape),
        g.bernoulli(0.5, shape),
        g.integers(0, 9, shape),
    ):
        assert np.asarray(x).shape == expected


def test_dropout_uses_the_generator():
    g = fj.random.Generator(109)
    x = np.ones((200, 100), np.float32)
    y = np.asarray(fj.compile(lambda x: fj.nn.dropout(x, 0.25, g))(x))
    kept = y != 0
    within(kept.mean(), 0.75, math.sqrt(0.75 * 0.25 / x.size), "kept share")
    np.testing.assert_allclose(y[kept], 1 / 0.75)


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "draw, error, message",
    [
        (lambda g: g.bernoulli(1.5, (2,)), ValueError, r"p must be in \[0, 1\], got 1.5"),
        (lambda g: g.bernoulli(-0.1, (2,)), ValueError, r"p must be in \[0, 1\]"),
        (lambda g: g.integers(5, 5, (2,)), ValueError, "needs low < high, got low=5, high=5"),
        (lambda g: g.integers(5, 2, (2,)), ValueError, "needs low < high"),
        (lambda g: g.integers(0, 2**31 + 1, (2,)), ValueError, "outside int32's range"),
        (lambda g: g.integers(0.5, 2, (2,)), TypeError, "low must be an int, got float"),
        (lambda g: g.uniform((2,), 1.0, 1.0), ValueError, "needs low < high in f32"),
        (lambda g: g.uniform((2,), 0.0, 1e6, dtype=fnp.float16), ValueError, "not finite in f16"),
        (lambda g: g.uniform((2,), "a", 1.0), TypeError, "low and high must be numbers"),
        (lambda g: g.normal((2, -1)), fj.ShapeError, r"shape \(2, -1\) has a negative dimension"),
        (lambda g: g.normal((2.5,)), fj.ShapeError, "shape must be an int or a tuple of ints"),
        (lambda g: g.uniform("ab"), fj.ShapeError, "shape must be an int or a tuple of ints"),
        (lambda g: g.normal((2,), dtype=np.int32), fj.DTypeError, "normal draws one of f16"),
        (lambda g: g.bernoulli(np.ones((3,), np.float32), (2,)), fj.ShapeError, "does not broad"),
        (lambda g: g.bernoulli(np.ones((2,), np.int32), (2,)), fj.DTypeError, "float probab"),
    ],
)
def test_bad_draws_raise_clear_errors(draw, error, message):
    g = fj.random.Generator(0)
    with pytest.raises(error, match=message):
        draw(g)
    assert counter(g) == 0  # nothing was drawn


def test_bad_draw_inside_a_compiled_function_names_the_line():
    g = fj.random.Generator(0)
    with pytest.raises(fj.ShapeError, match=r"test_random.py:\d+: Generator.normal: shape"):
        fj.compile(lambda x: g.normal((-1,)) + x)(np.float32(0))


@pytest.mark.parametrize(
    "seed, error, message",
    [
        (1.5, TypeError, "seed must be an int, got float"),
        (True, TypeError, "seed must be an int, got bool"),
        (2**64, ValueError, "seed must fit in 64 bits"),
        (-(2**63) - 1, ValueError, "seed must fit in 64 bits"),
    ],
)
def test_bad_seeds_raise(seed, error, message):
    with pytest.raises(error, match=message):
        fj.random.Generator(seed)
