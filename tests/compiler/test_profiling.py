"""fj.profile (issue 26): a profile of training steps names the user's lines that took the
time, and its per-line times add up to the steps' time."""

from __future__ import annotations

import time

import numpy as np
import pytest

import flowjit as fj


def mlp_step():
    rng = np.random.default_rng(0)
    w1 = fj.Variable(rng.standard_normal((784, 512)).astype(np.float32) * 0.03, name="w1")
    b1 = fj.Variable(np.zeros(512, np.float32), name="b1")
    w2 = fj.Variable(rng.standard_normal((512, 512)).astype(np.float32) * 0.03, name="w2")
    params = [w1, b1, w2]
    opt = fj.optim.Adam(1e-3)

    @fj.compile
    def train_step(x, y):
        h = fj.nn.relu(x @ w1 + b1)  # FIRST MATMUL
        logits = h @ w2  # SECOND MATMUL
        loss = fj.nn.softmax_cross_entropy(logits, y).mean()
        opt.apply(fj.gradients(loss, params), params)
        return loss

    x = rng.standard_normal((256, 784)).astype(np.float32)
    y = rng.integers(0, 512, 256).astype(np.int32)
    return train_step, x, y


def line_of(marker: str) -> int:
    source = open(__file__).read().splitlines()
    return next(i + 1 for i, text in enumerate(source) if text.endswith(f"# {marker}"))


def test_the_matmul_lines_take_the_most_time_and_the_lines_add_up_to_the_step(tmp_path):
    train_step, x, y = mlp_step()
    float(train_step(x, y))  # (compiled before the profile)
    steps = 10
    with fj.profile(tmp_path) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            loss = train_step(x, y)
        float(loss)
        wall = (time.perf_counter() - start) / steps
    rows = prof.top_lines(n=100)
    assert prof.executions == {"jit_train_step": steps}
    assert prof.compile_seconds["jit_train_step"] > 0  # (compiled before the profile)
    assert "XLA compile" in prof.summary().splitlines()[0]
    top = [(row.line and row.line.file, row.line and row.line.line) for row in rows[:2]]
    assert set(top) == {
        ("test_profiling.py", line_of("FIRST MATMUL")),
        ("test_profiling.py", line_of("SECOND MATMUL")),
    }, prof.table()
    assert "dot_general" in rows[0].ops and "dot_general" in rows[1].ops
    # each execution's time is divided among the lines: they add up to it; an execution
    # takes no longer than the loop's time per step (how close the two are is measured by
    # bench/profile.py, not here: a busy machine moves it)
    span = prof.step_seconds["jit_train_step"]
    assert sum(row.seconds_per_step for row in rows) == pytest.approx(span, rel=1e-9)
    assert 0 < span <= wall * 1.05, (span, wall)
    assert prof.busy["jit_train_step"] > 0
    assert sum(row.share for row in rows) == pytest.approx(1.0, rel=1e-9)
    table = prof.table()
    assert f"test_profiling.py:{top[0][1]}" in table.splitlines()[2]
    assert prof.trace_path.endswith("perfetto_trace.json.gz")
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))


def test_one_profile_at_a_time(tmp_path):
    with fj.profile(tmp_path / "a") as prof:
        with pytest.raises(RuntimeError, match="a profile is recording already"):
            with fj.profile(tmp_path / "b"):
                pass
        with pytest.raises(RuntimeError, match="still recording"):
            prof.top_lines()
    assert not fj.config.profiling and not fj.config.call_hooks


def test_xprofs_own_reader_loads_the_trace_with_the_ops_the_table_attributes(tmp_path):
    """The XProf trace (what TensorBoard's profile plugin shows) holds the XLA ops whose
    times the table divides among lines."""
    import json

    from flowjit.runtime.profile import read_op_times
    from xprof.convert import raw_to_tool_data  # (the test extra installs xprof)

    train_step, x, y = mlp_step()
    float(train_step(x, y))
    with fj.profile(tmp_path) as prof:
        for _ in range(3):
            loss = train_step(x, y)
        float(loss)
    xplanes = [str(p) for p in tmp_path.glob("plugins/profile/*/*.xplane.pb")]
    data, _ = raw_to_tool_data.xspace_to_tool_data(xplanes, "trace_viewer@", {})
    events = json.loads(data)["traceEvents"]
    shown = {e.get("name") for e in events}
    ours = read_op_times(prof.trace_path)["jit_train_step"].seconds
    costly = sorted(ours, key=ours.get, reverse=True)[:3]
    assert set(costly) <= shown, (costly, sorted(n for n in shown if n)[:50])


SCRIPT = """
import sys
import numpy as np
import flowjit as fj

w = fj.Variable(np.ones((256, 256), np.float32) * 0.01)

@fj.compile
def step(x):
    w.assign(w - 0.01 * (x.T @ (x @ w)))  # THE MATMULS
    return (x @ w).sum()

x = np.ones((128, 256), np.float32)
for _ in range(int(sys.argv[1])):
    loss = step(x)
print("done", bool(np.isfinite(float(loss))))
"""


def run_script(tmp_path, *command: str, env: dict | None = None):
    import os
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, *command, str(script), "5"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done True" in done.stdout
    return done


def test_python_m_flowjit_profile_runs_a_script_and_names_its_lines(tmp_path):
    done = run_script(tmp_path, "-m", "flowjit.profile", "--logdir", str(tmp_path / "p"))
    line = SCRIPT.splitlines().index(next(t for t in SCRIPT.splitlines() if "THE MATMULS" in t))
    assert "## jit_step: 5 executions" in done.stdout
    assert f"| train.py:{line + 1} | " in done.stdout
    assert (tmp_path / "p" / "flowjit-profile.md").read_text().count("jit_step") == 1
    assert list((tmp_path / "p").glob("plugins/profile/*/*.xplane.pb"))


def test_flowjit_profile_in_the_environment_profiles_the_whole_program(tmp_path):
    done = run_script(tmp_path, env={"FLOWJIT_PROFILE": str(tmp_path / "q")})
    summary = (tmp_path / "q" / "flowjit-profile.md").read_text()
    assert "## jit_step: 5 executions" in summary and "train.py:" in summary
    assert "flowjit: profile in" in done.stderr


def test_importing_flowjit_profile_leaves_fj_profile_callable(tmp_path):
    import flowjit.profile  # noqa: F401  (the command's module)

    with fj.profile(tmp_path) as prof:
        pass
    assert prof.summary().startswith("no compiled function ran")


SHARDED = """
import json, sys
import numpy as np
import flowjit as fj
from flowjit.runtime.profile import read_op_times

mesh = fj.Mesh(np.array(fj.devices()), ("data",))
with mesh:
    w = fj.Variable(np.ones((256, 256), np.float32) * 0.01, name="w")

    @fj.compile(in_shardings=(fj.P("data"),), mesh=mesh)
    def step(x):
        loss = ((x @ w) ** 2).mean()
        w.assign_sub(0.01 * fj.gradients(loss, [w])[0])
        return loss

    x = np.ones((512, 256), np.float32)
    float(step(x))
    with fj.profile(sys.argv[1]) as prof:
        for _ in range(3):
            loss = step(x)
        float(loss)
ops = sorted(read_op_times(prof.trace_path)["jit_step"].seconds)
print(json.dumps({"categories": prof.categories["jit_step"], "ops": ops,
                  "summary": prof.summary()}))
"""


def test_a_sharded_step_shows_its_all_reduce(tmp_path):
    from devices import run_on_eight_devices

    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    result = run_on_eight_devices([str(script), str(tmp_path / "p")], timeout=300)
    assert any(op.startswith("all-reduce") for op in result["ops"]), result["ops"]
    assert result["categories"]["collective"] > 0 and result["categories"]["compute"] > 0
    assert "collective" in result["summary"].splitlines()[0]


def test_a_step_with_a_host_call_shows_the_clusters_on_either_side(tmp_path):
    w = fj.Variable(np.ones((64, 64), np.float32), name="w")

    def double(h):
        return np.asarray(h) * 2

    @fj.compile
    def step(x):
        h = x @ w  # BEFORE THE HOST CALL
        h2 = fj.host_call(double, h, result_shape_dtypes=fj.ShapeDtype(h.shape, np.float32))
        return (h2 @ w).sum()  # AFTER THE HOST CALL

    x = np.ones((32, 64), np.float32)
    float(step(x))
    with fj.profile(tmp_path) as prof:
        for _ in range(3):
            loss = step(x)
        float(loss)
    assert prof.executions["jit_step_cluster_0"] == prof.executions["jit_step_cluster_1"] == 3
    before = prof.top_lines("jit_step_cluster_0")[0]
    after = prof.top_lines("jit_step_cluster_1")[0]
    assert before.line.line == line_of("BEFORE THE HOST CALL") and "dot_general" in before.ops
    assert after.line.line == line_of("AFTER THE HOST CALL") and "reduce_sum" in after.ops
    host = line_of("BEFORE THE HOST CALL") + 1
    (name, runs), *others = prof.host_calls.items()
    assert not others and name == f"double at test_profiling.py:{host}" and runs.calls == 3
    assert runs.seconds > 0 and "## host calls" in prof.summary()
