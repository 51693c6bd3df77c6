"""SPMD over meshes of 8 virtual CPU devices, and 2 processes on localhost (each check runs
in fresh processes: XLA reads the device count when jax starts). The scripts beside this
file do the work and print JSON reports; the tests read them."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
from devices import run_on_eight_devices

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="module")
def report() -> dict:
    return run_on_eight_devices([str(HERE / "sharding_script.py")])


@pytest.mark.parametrize("layout", ["data_parallel", "tensor_parallel", "mesh_2d"])
def test_spmd_training_equals_one_device_training(report, layout):
    run = report[layout]
    assert run["losses_close"] and run["weights_close"], run  # 20 steps, rtol 1e-5
    first, last = run["loss_first_last"]
    assert last < first  # it trained


def test_data_parallel_step_holds_an_all_reduce_and_replicates_weights(report):
    run = report["data_parallel"]
    assert run["all_reduce"]
    assert run["w1_sharding"] == "P()" and run["w1_devices"] == 8


def test_optimizer_state_is_sharded_as_its_variable(report):
    assert report["tensor_parallel"]["w1_moments_sharding"] == ["P(None, 'model')"] * 2


def test_constraints_reach_the_ir_and_the_stablehlo(report):
    assert report["mesh_2d"]["ir_has_with_sharding"]
    assert report["mesh_2d"]["stablehlo_has_sdy"]


def test_sharded_variable_shards_sit_on_the_expected_devices(report):
    # w1 (16, 32) as P(None, "model") on a 4 x 2 mesh: devices 0, 2, 4, 6 hold columns 0..16
    # and devices 1, 3, 5, 7 columns 16..32, each shard (16, 16)
    assert report["mesh_2d"]["w1_sharding"] == "P(None, 'model')"
    shards = report["shards"]
    assert [d for d, _, _ in shards] == list(range(8))
    assert all(shape == [16, 16] for _, shape, _ in shards)
    for device, _, index in shards:
        start = 0 if device % 2 == 0 else 16
        assert f"slice({start}, {start + 16}, None)" in index
    # a variable created with P("data", "model") is created in shards, (64, 8) -> (16, 4)
    assert report["created_shards"] == [[16, 4]]
    # and keeps its layout through eager updates
    assert report["eager_update_sharding"] == "P('data', 'model')"
    assert report["eager_update_right"]


def test_sharded_variables_save_and_restore_with_their_shardings(report):
    restored = report["restored"]
    assert restored["w1_equal"] and restored["big_equal"]
    assert restored["w1_sharding"] == "P(None, 'model')"
    assert restored["big_sharding"] == "P('data',)"  # restored into another layout
    assert restored["big_shard_shapes"] == [[16, 8]]


def test_host_call_between_spmd_clusters(report):
    run = report["host_call"]
    assert run["equal"]
    assert run["out_sharding"] == "P('data',)" and run["v_sharding"] == "P('data',)"
    assert run["marked_spmd"]  # the partition pass marked its clusters SPMD over the mesh


def test_shardings_given_as_trees_apply_to_each_leaf(report):
    trees = report["trees"]
    assert trees["first_equal"] and trees["second_equal"] and trees["every_argument_equal"]
    assert trees["first_sharding"] == "P('data',)" and trees["second_sharding"] == "P()"
    assert trees["every_argument"] == "P('data',)"


@pytest.mark.parametrize(
    "case, words",
    [
        ("variable_axis", ["variable 'emb'", "'modle'", "use one of 'data', 'model'"]),
        (
            "variable_divisible",
            ["variable 'table'", "dimension 0 has size 6", "4 does not divide 6"],
        ),
        ("argument_divisible", ["in_shardings for argument batch", "dimension 0 has size 6"]),
        ("argument_axis", ["in_shardings", "'rows'"]),
        ("with_sharding", ["sharding_script.py:", "fj.with_sharding", "2 does not divide 3"]),
        ("variable_without_mesh", ["variable 'lonely'", "needs a mesh", "with mesh:"]),
        ("spec_without_mesh", ["need a mesh", "mesh=fj.Mesh"]),
        ("too_long_spec", ["variable 'bias'", "rank 1"]),
        ("other_mesh", ["variable 'u'", "Mesh(data=4, model=2)"]),
        ("by_keyword", ["pass its array arguments by position", "(x)"]),
        ("too_few_shardings", ["in_shardings gives 1 entries", "2 positional"]),
        ("bad_result_sharding", ["out_shardings for result[1]", "2 does not divide 3"]),
    ],
)
def test_bad_shardings_raise_sharding_errors_naming_the_value(report, case, words):
    message = report["errors"][case]
    assert not message.startswith(("UNEXPECTED", "NO ERROR")), message
    for word in words:
        assert word in message, message


# -- two processes -------------------------------------------------------------------------------
# A run that is not over after this many seconds is killed (SIGKILL: jax's preemption notifier
# catches SIGTERM) and fails with both processes' output. fj.distributed's own watchdog ends a
# hung step after 60 s (the script's collective_timeout), well before.
DEADLINE = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_processes(
    count: int, folder: pathlib.Path, extra: list[str], env: dict
) -> tuple[list[subprocess.Popen], list[pathlib.Path]]:
    port = str(_free_port())
    logs = [folder / f"output-{i}.txt" for i in range(count)]
    procs = []
    for i, log in enumerate(logs):
        with open(log, "w") as out:  # (a file, not a pipe: a full pipe would block a process)
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "distributed_script.py"), port, str(i)]
                    + [str(count), str(folder), *extra],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs, logs


def _wait(procs: list[subprocess.Popen], awaited: list[int]) -> None:
    """Wait until the processes ``awaited`` have exited or DEADLINE has passed, then kill
    every process still running."""
    try:
        end = time.monotonic() + DEADLINE
        for i in awaited:
            procs[i].wait(timeout=max(end - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _outputs(logs: list[pathlib.Path], procs: list[subprocess.Popen]) -> str:
    return "\n".join(
        f"---- process {i}, exit status {p.returncode}:\n{log.read_text()[-4000:]}"
        for i, (log, p) in enumerate(zip(logs, procs))
    )


def _run_processes(
    count: int, folder: pathlib.Path, extra: list[str] = (), awaited: list[int] | None = None
) -> tuple[list[subprocess.Popen], list[pathlib.Path]]:
    """Run distributed_script.py as ``count`` processes (wait for all, or for ``awaited``);
    a retry covers a port taken between choosing and binding it."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "FLOWJIT_CACHE_DIR")}
    env["JAX_PLATFORMS"] = "cpu"
    env["FLOWJIT_CACHE_DIR"] = str(folder.parent / "cache")  # shared by all runs of a test
    for _ in range(3):
        procs, logs = _start_processes(count, folder, list(extra), env)
        _wait(procs, list(range(count)) if awaited is None else awaited)
        if not any("Failed to add port" in log.read_text() for log in logs):
            break
    return procs, logs


def _reports(count: int, folder: pathlib.Path) -> list[dict]:
    procs, logs = _run_processes(count, folder)
    assert all(p.returncode == 0 for p in procs), _outputs(logs, procs)
    return [json.loads((folder / f"report-{i}.json").read_text()) for i in range(count)]


def test_two_processes_give_the_losses_of_one(tmp_path):
    for name in ("one", "two", "again"):
        (tmp_path / name).mkdir()
    (single,) = _reports(1, tmp_path / "one")
    pair = _reports(2, tmp_path / "two")
    # a second run, with the first's compilation cache folder: process 0 would find its step
    # there and the other process would not (their cache keys differ), and the two programs
    # deadlocked in their first all-reduce; multi-process runs on CPU turn the cache off
    again = _reports(2, tmp_path / "again")
    assert single["devices"] == 8 and single["processes"] == 1
    assert single["cache_dir"] == str(tmp_path / "cache")
    assert [r["process"] for r in pair] == [0, 1]
    for run in pair + again:
        assert run["processes"] == 2 and run["devices"] == 8 and run["local_devices"] == 4
        assert run["cache_dir"] is None and run["jax_cache_dir"] is None
        assert run["losses"] == pytest.approx(single["losses"], rel=1e-5)
        assert run["losses"][-1] < run["losses"][0]
        # the checkpoint process 0 wrote restores each process's shards
        assert run["restored_local_shards"] == 4
        assert run["restored_sum"] == pytest.approx(run["w1_local_sum"], rel=1e-6)
    assert pair[0]["losses"] == pair[1]["losses"] == again[0]["losses"]
    assert (tmp_path / "two" / "w1.safetensors").exists()


def test_a_step_whose_peer_never_joins_ends_the_process_with_a_report(tmp_path):
    (tmp_path / "hang").mkdir()
    procs, logs = _run_processes(2, tmp_path / "hang", ["hang"], awaited=[0])
    output = logs[0].read_text()
    assert procs[0].returncode == 75, _outputs(logs, procs)  # the watchdog's, not a kill
    assert "flowjit: process 0 of 2: a computation (result float32[" in output
    assert "has not finished" in output
    assert "collective_timeout=5 s" in output
    assert 'distributed_script.py", line' in output  # the Python stacks: where it waited
    assert not (tmp_path / "hang" / "report-0.json").exists()


def test_initialize_after_devices_were_used_says_to_move_it():
    code = (
        "import flowjit as fj\n"
        "fj.devices()\n"
        "try:\n"
        "    fj.distributed.initialize('127.0.0.1:1', 2, 0, initialization_timeout=2)\n"
        "except fj.FlowjitError as err:\n"
        "    print('FlowjitError:', err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FlowjitError: fj.distributed.initialize must run before any computation" in done.stdout


@pytest.mark.parametrize("timeout", [0, -5.0])
def test_collective_timeout_must_be_positive(timeout):
    import flowjit as fj

    with pytest.raises(ValueError, match="collective_timeout must be a number of seconds > 0"):
        fj.distributed.initialize("127.0.0.1:1", 2, 0, collective_timeout=timeout)
