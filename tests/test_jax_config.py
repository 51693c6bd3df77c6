"""``import flowjit`` changes no jax setting, and flowjit computes in the dtypes jax's own
``jax_enable_x64`` gives, as jax.jit does: with x64 off (jax's default) numpy's float64/int64
data is float32/int32 and no 64-bit type enters the IR; with x64 on it stays 64-bit. The
persistent compilation cache is given to jax at flowjit's first compile, only if the process
set none (docs/user-guide.md, "Dtypes and jax's settings")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp


def run_fresh(code: str, tmp_path, **env: str) -> dict:
    """``code`` in a fresh process (no JAX_ENABLE_X64 and no flowjit cache folder in its
    environment unless ``env`` sets them; the default cache folder under ``tmp_path``); returns
    the JSON object its last line prints."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JAX_ENABLE_X64", "FLOWJIT_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR")
    }
    environ.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), **env)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# The reproducer: jax's settings around the import, then the dtypes of a compiled
# function's results and of jax.jit's for numpy float64/int64 arguments.
IMPORT_AND_DTYPES = """
    import json, jax
    before = {k: repr(v) for k, v in jax.config.values.items()}
    import numpy as np, flowjit as fj
    after = {k: repr(v) for k, v in jax.config.values.items()}
    changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
               if before.get(k) != after.get(k)}

    def f(x, i):
        return x * 2, i + 1, x.sum(), (i * 3) // 2

    args = (np.ones(3), np.ones(3, np.int64))
    print(json.dumps({
        "changed": changed,
        "x64": bool(jax.config.jax_enable_x64),
        "flowjit": [str(a.dtype) for a in fj.compile(f)(*args)],
        "jax": [str(a.dtype) for a in jax.jit(f)(*args)],
        "cache_dir_after_compile": jax.config.jax_compilation_cache_dir,
    }))
"""


@pytest.mark.parametrize("x64_env", [None, "1"], ids=["x64-off", "JAX_ENABLE_X64=1"])
def test_import_changes_no_jax_setting_and_results_have_jax_jit_dtypes(tmp_path, x64_env):
    report = run_fresh(
        IMPORT_AND_DTYPES, tmp_path, **({} if x64_env is None else {"JAX_ENABLE_X64": x64_env})
    )
    assert report["changed"] == {}
    assert report["x64"] == (x64_env == "1")
    assert report["flowjit"] == report["jax"]
    if x64_env is None:
        assert report["jax"] == ["float32", "int32", "float32", "int32"]
    else:
        assert report["jax"] == ["float64", "int64", "float64", "int64"]
    # (the first compile gave jax flowjit's default cache folder: none was set)
    assert report["cache_dir_after_compile"] == str(tmp_path / "xdg" / "flowjit" / "xla")


def test_x64_turned_on_after_import_is_followed(tmp_path):
    report = run_fresh(
        """
        import json, jax, numpy as np, flowjit as fj
        f = fj.compile(lambda x, i: (x * 2, i + 1))
        args = (np.ones(3), np.ones(3, np.int64))
        off = [str(a.dtype) for a in f(*args)]
        jax.config.update("jax_enable_x64", True)
        on = [str(a.dtype) for a in f(*args)]
        print(json.dumps({"off": off, "on": on, "traces": f.cache_info().traces}))
        """,
        tmp_path,
    )
    assert report == {"off": ["float32", "int32"], "on": ["float64", "int64"], "traces": 2}


def test_a_cache_folder_the_user_gave_jax_is_kept(tmp_path):
    report = run_fresh(
        """
        import json, jax
        jax.config.update("jax_compilation_cache_dir", %r)
        before = {k: repr(v) for k, v in jax.config.values.items()}
        import numpy as np, flowjit as fj
        fj.compile(lambda x: x + 1)(np.ones(3, np.float32))
        after = {k: repr(v) for k, v in jax.config.values.items()}
        print(json.dumps({k: (before[k], after[k]) for k in before if before[k] != after[k]}))
        """
        % str(tmp_path / "mine"),
        tmp_path,
    )
    assert report == {}  # not even after flowjit's first compile


def test_fj_config_sets_jax_cache_folder_at_once(tmp_path):
    report = run_fresh(
        """
        import json, jax
        jax.config.update("jax_compilation_cache_dir", %r)
        import flowjit as fj
        fj.config.update("cache_dir", %r)
        moved = jax.config.jax_compilation_cache_dir
        fj.config.update("cache_dir", None)
        print(json.dumps({"moved": moved, "off": jax.config.jax_compilation_cache_dir}))
        """
        % (str(tmp_path / "mine"), str(tmp_path / "flowjit")),
        tmp_path,
    )
    assert report == {"moved": str(tmp_path / "flowjit"), "off": None}


# -- with x64 off (the tests' mode, tests/conftest.py): jax.jit's dtypes, no 64-bit type --------
F64_ARRAY, I64_ARRAY = np.linspace(-1.0, 2.0, 6), np.arange(6, dtype=np.int64) - 2

# name -> fn(m, x, i) written once for ``m`` = flowjit.numpy and jax.numpy; x and i are float64
# and int64 numpy arrays
FRONT_END = {
    "arithmetic": lambda m, x, i: (x * 2, i + 1, x / i, i // 2, x**2),
    "numpy constants": lambda m, x, i: (x + np.arange(6.0), i * np.array([1, 2, 3, 4, 5, 6])),
    "numpy scalars": lambda m, x, i: (x * np.float64(2.5), i + np.int64(3)),
    "lists": lambda m, x, i: (m.asarray([1.5, 2.5]), m.asarray([1, 2])),
    "arange": lambda m, x, i: (m.arange(5), m.arange(0.0, 1.0, 0.25), m.arange(3, dtype=np.int64)),
    "creation with 64-bit dtypes": lambda m, x, i: (
        m.zeros(3, np.float64),
        m.ones((2,), dtype=np.int64),
        m.full(2, 1.5, np.float64),
        m.eye(2, dtype=np.float64),
        m.zeros_like(x),
        m.ones_like(i, dtype=np.float64),
    ),
    "astype": lambda m, x, i: (x.astype(np.float64), x.astype(np.int64), i.astype(float)),
    "reductions": lambda m, x, i: (
        m.mean(i),
        m.sum(i),
        m.prod(x, dtype=np.float64),
        m.var(x),
        m.cumsum(i),
        m.max(x),
    ),
    "argmax and sorting": lambda m, x, i: (m.argmax(x), x.argmin(), m.argsort(x), m.sort(i)),
    "indexing with int64 indices": lambda m, x, i: (
        x[np.array([0, 2, 5])],
        x[i[2:4]],
        m.take(x, np.array([1, 0])),
        m.take_along_axis(x, np.array([3, 1]), axis=0),
        x[np.int64(1)],
    ),
    "where and clip": lambda m, x, i: (m.where(x > 0, x, np.float64(0)), m.clip(i, 0, 2)),
    "float-only functions of ints": lambda m, x, i: (m.exp(i), m.sqrt(np.float64(2.0)) * x),
}


def no_64_bit_types(ir_text: str) -> bool:
    return not any(t in ir_text for t in ("f64", "i64", "u64"))


@pytest.mark.parametrize("name", sorted(FRONT_END))
def test_x64_off_front_end_has_jax_jit_dtypes_and_no_64_bit_type(name):
    assert not jax.config.jax_enable_x64
    fn = FRONT_END[name]
    compiled = fj.compile(lambda x, i: fn(fnp, x, i))
    lowered = compiled.lower(F64_ARRAY, I64_ARRAY)
    for stage in ("traced", "optimized"):
        assert no_64_bit_types(lowered.ir(stage=stage)), lowered.ir(stage=stage)
    got = compiled(F64_ARRAY, I64_ARRAY)
    want = jax.jit(lambda x, i: fn(jnp, x, i))(F64_ARRAY, I64_ARRAY)
    assert [a.dtype for a in got] == [a.dtype for a in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)


@pytest.mark.x64
def test_x64_on_keeps_64_bit_data():
    @fj.compile
    def f(x, i):
        return x * 2, i + 1, fnp.zeros(2, np.float64), x + np.arange(6.0), i[np.array([1])]

    want = [np.float64, np.int64, np.float64, np.float64, np.int64]
    assert [a.dtype for a in f(F64_ARRAY, I64_ARRAY)] == [np.dtype(t) for t in want]


def test_x64_off_random_and_nn_make_no_64_bit_type():
    g = fj.random.Generator(0)

    @fj.compile
    def f(labels):
        return (
            g.normal((3,), dtype=np.float64),
            g.uniform((3,), dtype=np.float64),
            g.integers(0, 10, (3,)),
            fj.nn.one_hot(labels, 4),
            fj.nn.softmax(labels.astype(np.float64)),
        )

    labels = np.array([0, 3, 1], np.int64)
    assert no_64_bit_types(f.lower(labels).ir(stage="traced"))
    dtypes = [a.dtype for a in f(labels)]
    assert dtypes == [np.dtype(t) for t in (np.float32, np.float32, np.int32)] + [
        a.dtype for a in (jax.nn.one_hot(labels, 4), jax.nn.softmax(labels.astype(np.float64)))
    ]


def test_x64_off_variables_and_host_calls_are_32_bit():
    w = fj.Variable(np.ones(3))  # float64 data
    n = fj.Variable(np.arange(3))  # int64 data
    assert (w.dtype, n.dtype) == (np.dtype(np.float32), np.dtype(np.int32))
    w.assign(np.full(3, 2.0))  # (float64 data assigned outside a compiled function)

    @fj.compile
    def f(x):
        w.assign_add(x)
        n.assign_add(np.ones(3, np.int64))
        twice = fj.host_call(
            lambda v: np.asarray(v, np.float64) * 2,
            w,
            result_shape_dtypes=fj.ShapeDtype((3,), np.float64),
        )
        return twice

    out = f(np.ones(3))
    assert out.dtype == np.float32 and w.value.dtype == np.float32 and n.value.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(out), [6.0, 6.0, 6.0])
    np.testing.assert_array_equal(np.asarray(n), [1, 2, 3])
