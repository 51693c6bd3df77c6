"""Host work (API.md section 6): fj.host_call and fj.print inside compiled functions run on
the host in program order, between compiled clusters (in loop bodies, as callbacks); errors
name the user's line and change no variable."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp

HERE = "test_host.py"
F32 = np.float32


def line_of(fn, marker: str) -> int:
    """The line of ``fn``'s source that contains ``marker``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def printed(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def show(a):
    return a


# -- host_call ------------------------------------------------------------------------------
def test_host_call_takes_and_returns_pytrees():
    def stats(batch):  # numpy on the host, on a dict; returns a dict holding a tuple
        x, w = batch["x"], batch["w"]
        order = np.argsort(w).astype(np.int32)
        return {"mean": x.mean(axis=0), "order": (order, F32(np.abs(w).max()))}

    types = {
        "mean": fj.ShapeDtype((3,), np.float32),
        "order": (fj.ShapeDtype((4,), np.int32), jax.ShapeDtypeStruct((), np.float32)),
    }

    @fj.compile
    def step(x, w):
        s = fj.host_call(stats, {"x": x * 2, "w": w - 1}, result_shape_dtypes=types)
        return s["mean"] * s["order"][1] + x[0], s["order"][0] + 1

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(F32)
    w = rng.permutation(4).astype(F32)
    scaled, order = step(x, w)
    want = (x * 2).mean(axis=0) * np.abs(w - 1).max() + x[0]
    np.testing.assert_allclose(np.asarray(scaled), want, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(order), np.argsort(w - 1) + 1)
    assert np.asarray(order).dtype == np.int32


def test_numpy_function_results_feed_compiled_code():
    @fj.compile
    def step(a, b):
        m = a @ a.T + 3 * fnp.eye(3)
        inv = fj.host_call(np.linalg.inv, m, result_shape_dtypes=fj.ShapeDtype((3, 3), F32))
        return inv @ b, fnp.sum(inv @ m)

    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 3)).astype(F32)
    b = rng.standard_normal((3, 2)).astype(F32)
    solved, trace = step(a, b)
    m = a.astype(np.float64) @ a.T + 3 * np.eye(3)
    np.testing.assert_allclose(np.asarray(solved), np.linalg.solve(m, b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(trace), 3.0, rtol=1e-4)  # inv(m) @ m is the identity


# -- fj.print and program order -------------------------------------------------------------
def test_prints_follow_variable_updates_and_host_calls_in_program_order(capsys):
    v = fj.Variable(F32(1.0), name="v")

    def double(a):
        print(f"host sees {a}")
        return a * 2

    @fj.compile
    def step(x):
        fj.print("before v={} x={}", v, x)
        v.assign_add(x)
        fj.print("after v={}", v)
        doubled = fj.host_call(double, v, result_shape_dtypes=fj.ShapeDtype((), F32))
        v.assign(doubled)
        fj.print("end v={} doubled={}", v, doubled)
        return v + 1

    assert float(step(F32(2))) == 7.0  # v: 1 -> 3 -> 6
    assert float(step(F32(1))) == 15.0  # v: 6 -> 7 -> 14 (the second call sees the update)
    assert float(v.value) == 14.0
    assert printed(capsys) == [
        "before v=1.0 x=2.0",
        "after v=3.0",
        "host sees 3.0",
        "end v=6.0 doubled=6.0",
        "before v=6.0 x=1.0",
        "after v=7.0",
        "host sees 7.0",
        "end v=14.0 doubled=14.0",
    ]


def test_print_in_a_loop_body_prints_once_per_iteration_in_order(capsys):
    @fj.compile
    def scanned(xs):
        def body(c, x):
            fj.print("scan c={} x={}", c, x)
            return c + x, c * 2

        return fj.scan(body, F32(0), xs)

    @fj.compile
    def counted(c):
        def body(i, c):
            fj.print("fori i={} c={}", i, c)
            return c * 2

        return fj.fori_loop(0, 3, body, c)

    total, doubled = scanned(np.array([1, 2, 3], F32))
    assert float(total) == 6.0
    np.testing.assert_array_equal(np.asarray(doubled), [0, 2, 6])
    assert float(counted(F32(1))) == 8.0
    assert printed(capsys) == [
        "scan c=0.0 x=1.0",
        "scan c=1.0 x=2.0",
        "scan c=3.0 x=3.0",
        "fori i=0 c=1.0",
        "fori i=1 c=2.0",
        "fori i=2 c=4.0",
    ]


def test_host_calls_in_a_loop_body_run_in_program_order(capsys):
    @fj.compile
    def step(xs):
        def body(c, x):
            fj.print("a {}", c)
            shifted = fj.host_call(lambda t: t + 1, x, result_shape_dtypes=fj.ShapeDtype((), F32))
            fj.print("b {}", shifted)
            fj.print("c {}", x)
            return c + shifted, c

        return fj.scan(body, F32(0), xs)

    total, _ = step(np.array([10, 20], F32))
    assert float(total) == 32.0
    assert printed(capsys) == ["a 0.0", "b 11.0", "c 10.0", "a 11.0", "b 21.0", "c 20.0"]


def test_prints_around_a_loop_that_prints_keep_program_order(capsys):
    @fj.compile
    def step(c):
        fj.print("start {}", c)

        def body(i, c):
            fj.print("iteration {}", i)
            return c * 2

        c = fj.fori_loop(0, 2, body, c)
        fj.print("end {}", c)
        return c

    assert float(step(F32(1))) == 4.0
    assert printed(capsys) == ["start 1.0", "iteration 0", "iteration 1", "end 4.0"]


# -- errors ---------------------------------------------------------------------------------
WRONG_RESULTS = {
    "shape": (fj.ShapeDtype((3,), F32), lambda a: a),
    "structure": ((fj.ShapeDtype((2,), F32), fj.ShapeDtype((2,), F32)), lambda a: a),
    "dtype": (fj.ShapeDtype((2,), np.int32), lambda a: a + 0.5),  # floats, declared ints
}


@pytest.mark.parametrize("kind", WRONG_RESULTS)
def test_wrong_result_is_a_type_mismatch_naming_the_line(kind):
    declared, fn = WRONG_RESULTS[kind]

    def step(x):
        y = fj.host_call(fn, x + 1, result_shape_dtypes=declared)  # HOST_CALL
        return y, x * 2

    with pytest.raises(fj.TypeMismatchError) as info:
        fj.compile(step)(np.ones(2, F32))
    assert str(info.value).startswith(f"{HERE}:{line_of(step, '# HOST_CALL')}: host_call: ")


def fail(a):
    raise ValueError("no good")


def only_wrong_type(x):
    return fj.host_call(show, x, result_shape_dtypes=fj.ShapeDtype((3,), F32))  # CALL


def only_failing(x):
    return fj.host_call(fail, x, result_shape_dtypes=fj.ShapeDtype((2,), F32))  # CALL


@pytest.mark.parametrize(
    "step, error",
    [(only_wrong_type, fj.TypeMismatchError), (only_failing, fj.HostCallError)],
    ids=["type", "raise"],
)
def test_function_that_is_only_a_host_call_reports_errors_like_any_other(step, error):
    with pytest.raises(error) as info:
        fj.compile(step)(np.ones(2, F32))
    assert str(info.value).startswith(f"{HERE}:{line_of(step, '# CALL')}: host_call: ")


def test_host_call_error_names_the_line_and_changes_no_variable():
    v = fj.Variable(np.zeros(2, F32), name="v")
    failing = [False]

    def scale(a):
        if failing[0]:
            raise ValueError("no good")
        return a * 2

    def step(x):
        v.assign_add(x)
        y = fj.host_call(scale, v, result_shape_dtypes=fj.ShapeDtype((2,), F32))  # SCALE
        v.assign(y + 1)
        return y

    f = fj.compile(step)
    ones = np.ones(2, F32)
    np.testing.assert_array_equal(np.asarray(f(ones)), [2, 2])
    np.testing.assert_array_equal(np.asarray(v.value), [3, 3])
    failing[0] = True
    with pytest.raises(fj.HostCallError) as info:
        f(ones)
    message = str(info.value)
    assert message.startswith(f"{HERE}:{line_of(step, '# SCALE')}: host_call: ")
    assert "scale" in message and "ValueError: no good" in message
    assert isinstance(info.value.__cause__, ValueError)
    np.testing.assert_array_equal(np.asarray(v.value), [3, 3])  # the failed call wrote nothing
    failing[0] = False
    np.testing.assert_array_equal(np.asarray(f(ones)), [8, 8])  # (3 + 1) * 2
    np.testing.assert_array_equal(np.asarray(v.value), [9, 9])


def test_host_call_error_in_a_loop_body_names_the_line_and_changes_no_variable():
    v = fj.Variable(np.zeros(2, F32), name="v")
    failing = [False]

    def check(a):
        if failing[0]:
            raise ValueError("no good")
        return a

    def step(x):
        v.assign_add(x)

        def body(i, c):
            return fj.host_call(check, c, result_shape_dtypes=fj.ShapeDtype((2,), F32)) + 1  # IN

        return fj.fori_loop(0, 2, body, x)

    f = fj.compile(step)
    ones = np.ones(2, F32)
    np.testing.assert_array_equal(np.asarray(f(ones)), [3, 3])
    failing[0] = True
    with pytest.raises(fj.HostCallError) as info:
        f(ones)
    assert str(info.value).startswith(f"{HERE}:{line_of(step, '# IN')}: host_call: ")
    np.testing.assert_array_equal(np.asarray(v.value), [1, 1])
    failing[0] = False
    np.testing.assert_array_equal(np.asarray(f(ones)), [3, 3])
    np.testing.assert_array_equal(np.asarray(v.value), [2, 2])


# -- gradients ------------------------------------------------------------------------------
def test_gradients_of_a_function_that_prints(capsys):
    w = fj.Variable(np.array([1.0, 2.0], F32), name="w")

    @fj.compile
    def step(x):
        fj.print("w {}", w)
        loss = fnp.sum(w * x * x)
        fj.print("loss {}", loss)
        (g,) = fj.gradients(loss, [w])
        w.assign_sub(0.5 * g)
        return loss, g

    x = np.array([3.0, 4.0], F32)
    loss, g = step(x)
    assert float(loss) == 41.0
    np.testing.assert_array_equal(np.asarray(g), x * x)
    np.testing.assert_array_equal(np.asarray(w.value), [1 - 4.5, 2 - 8])

    def f(p, x):
        fj.print("p {}", p)
        return fnp.sum(fnp.tanh(p * x))

    p = np.array([0.5, -0.25], F32)
    grad = fj.compile(fj.grad(f))(p, x)
    wide = p.astype(np.float64) * x
    np.testing.assert_allclose(np.asarray(grad), x * (1 - np.tanh(wide) ** 2), rtol=1e-5)
    # each print ran once: taking a gradient adds no host work
    assert printed(capsys) == ["w [1. 2.]", "loss 41.0", f"p {p}"]


def test_a_gradient_through_a_host_call_is_a_gradient_error_naming_its_line():
    """jax's pure_callback has no gradient either: flowjit says so, never zeros."""

    def loss(x):
        y = fj.host_call(np.sin, x, result_shape_dtypes=fj.ShapeDtype((3,), F32))  # HOST
        return (y * x).sum()

    def in_scan(x):
        def body(c, row):
            y = fj.host_call(np.sin, row, result_shape_dtypes=fj.ShapeDtype((), F32))  # BODY
            return c + y * row, None

        return fj.scan(body, 0.0, x)[0]

    for fn, marker in ((loss, "# HOST"), (in_scan, "# BODY")):
        with pytest.raises(fj.GradientError) as info:
            fj.grad(fn)(np.ones(3, F32))
        message = str(info.value)
        assert message.startswith(f"{HERE}:{line_of(fn, marker)}: host_call: ")
        assert "fj.stop_gradient" in message and "custom" in message


def test_a_host_call_no_gradient_flows_through_is_differentiated_around():
    """A host call on data, on an integer or behind stop_gradient carries no derivative of
    what is differentiated: the gradient is taken as if its results were constants."""
    x = np.array([0.5, -1.0, 2.0], F32)
    w = np.array([0.3, 0.2, -0.4], F32)
    shape = fj.ShapeDtype((3,), F32)

    def loss(w, x):
        data = fj.host_call(np.cos, x, result_shape_dtypes=shape)  # data only
        stopped = fj.host_call(np.cos, fj.stop_gradient(w), result_shape_dtypes=shape)
        order = fj.host_call(
            lambda i: i * 2, fnp.argmax(w), result_shape_dtypes=fj.ShapeDtype((), np.int32)
        )

        def body(c, row):  # a host call inside a loop body, on the scanned data
            return c + fj.host_call(np.exp, row, result_shape_dtypes=fj.ShapeDtype((), F32)), None

        in_loop = fj.scan(body, 0.0, x)[0]
        return (w * w * data * stopped).sum() * in_loop + order.astype(F32) * w.sum()

    got = fj.grad(loss)(w, x)
    want = 2 * w * np.cos(x) * np.cos(w) * np.exp(x).sum() + 2 * np.argmax(w)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


# -- introspection, caching, static arguments ------------------------------------------------
@fj.compile
def split(x):
    y = fj.host_call(show, fnp.exp(x), result_shape_dtypes=fj.ShapeDtype((2,), F32))
    return y * x


def test_lowered_shows_clusters_and_host_calls():
    lowered = split.lower(np.ones(2, F32))
    text = lowered.ir()
    assert text.count(" = cluster(") == 2 and text.count("host_call(") == 1
    traced = lowered.ir("traced")
    assert "host_call(" in traced and "cluster(" not in traced
    assert lowered.stablehlo().count("module @") == 2  # one module per cluster
    last = lowered.passes()[-1]
    assert last.name == "partition" and last.changed


def test_compiling_a_split_function_as_one_executable_is_a_lowering_error():
    with pytest.raises(fj.LoweringError, match="host calls"):
        split.lower(np.ones(2, F32)).compile()
    x = np.array([0.0, 1.0], F32)
    np.testing.assert_allclose(np.asarray(split(x)), np.exp(x) * x, rtol=1e-6)  # still runs


def test_print_and_host_call_outside_a_compiled_function_run_at_once(capsys):
    fj.print("x = {} and {}", F32(2), 3)
    assert printed(capsys) == ["x = 2.0 and 3"]
    sums = fj.host_call(
        np.cumsum, np.arange(3, dtype=F32), result_shape_dtypes=fj.ShapeDtype((3,), F32)
    )
    assert np.shape(sums) == (3,)
    np.testing.assert_array_equal(sums, [0, 1, 3])
    both = fj.host_call(
        lambda a: {"neg": -a, "pair": (a, a * 2)},
        np.ones(2, F32),
        result_shape_dtypes={
            "neg": fj.ShapeDtype((2,), F32),
            "pair": (fj.ShapeDtype((2,), F32),) * 2,
        },
    )
    np.testing.assert_array_equal(both["neg"], [-1, -1])
    np.testing.assert_array_equal(both["pair"][1], [2, 2])


def test_cache_info_counts_hits_of_a_split_function():
    traces = []

    @fj.compile
    def step(x):
        traces.append(x.shape)
        y = fj.host_call(show, x * 2, result_shape_dtypes=fj.ShapeDtype(x.shape, F32))
        return y + 1

    for i in range(3):
        np.testing.assert_array_equal(np.asarray(step(np.full(2, i, F32))), [2 * i + 1] * 2)
    assert step.cache_info() == fj.CacheInfo(hits=2, misses=1, traces=1)
    step(np.ones(3, F32))
    assert step.cache_info() == fj.CacheInfo(hits=2, misses=2, traces=2)
    assert traces == [(2,), (3,)]


def test_host_calls_with_static_arguments(capsys):
    v = fj.Variable(F32(0), name="v")

    def step(x, verbose):
        v.assign_add(x)
        if verbose:
            fj.print("v={}", v)
        return v * 2

    f = fj.compile(step, static_argnums=1)
    results = [float(f(F32(1), verbose)) for verbose in (False, True, False, True)]
    assert results == [2.0, 4.0, 6.0, 8.0]
    assert float(v.value) == 4.0
    assert printed(capsys) == ["v=2.0", "v=4.0"]
    assert f.cache_info() == fj.CacheInfo(hits=2, misses=2, traces=2)
