"""fj.Checkpoint on orbax (compiler/checkpointing.py, runtime/checkpoint_manager.py): the whole
training state by path (model, optimizer, generators, step, data pipeline), asynchronous
saves, a resumed run equal to an uninterrupted one bit for bit, plain orbax reading it, and
the guarantees: all or nothing, never a wrong value, one writer, hostile folders refused."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import flowjit as fj
from flowjit.ir.errors import CheckpointError


class Net(fj.Module):
    def __init__(self, gen=None, seed: int = 0):
        self.hidden = fj.nn.Dense(8, in_features=4, rng=seed)
        self.drop = fj.nn.Dropout(0.25, rng=gen)
        self.out = fj.nn.Dense(2, in_features=8, rng=seed + 1)

    def __call__(self, x):
        return self.out(self.drop(fj.nn.relu(self.hidden(x)), deterministic=self.drop.rng is None))


def loader(seed: int = 0):
    """Grain: shuffled batches of 8 (x, y) pairs."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((64, 4)).astype(np.float32)
    ys = rng.standard_normal((64, 2)).astype(np.float32)
    return (
        grain.MapDataset.range(64)
        .shuffle(seed=seed)
        .map(lambda i: (xs[i], ys[i]))
        .batch(8)
        .repeat(10)
    )


def trainer():
    """A fresh run: model, optimizer (with its state made), generator, step counter, data."""
    gen = fj.random.Generator(7)
    net, opt = Net(gen), fj.optim.Adam(1e-2)
    step = fj.Variable(np.int32(0), name="step", trainable=False)
    opt.state(net.trainable_variables)

    @fj.compile
    def train(x, y):
        loss = ((net(x) - y) ** 2).mean()
        opt.apply(fj.gradients(loss, net.trainable_variables), net.trainable_variables)
        step.assign_add(1)
        return loss

    data = fj.data.prefetch(loader(), size=3)
    return net, opt, gen, step, data, train


def values(*groups) -> dict:
    out = {}
    for i, group in enumerate(groups):
        for v in group:
            out[f"{i}/{v.name}"] = np.asarray(v).copy()
    return out


def test_a_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path):
    net, opt, gen, step, data, train = trainer()
    whole = [float(train(*next(data))) for _ in range(12)]

    net, opt, gen, step, data, train = trainer()
    ckpt = fj.Checkpoint(tmp_path / "run", model=net, optimizer=opt, rng=gen, data=data, step=step)
    first = [float(train(*next(data))) for _ in range(5)]
    ckpt.save()  # step 5, from the step variable
    more = [float(train(*next(data))) for _ in range(2)]  # (lost: the run "crashes" here)
    ckpt.close()
    assert first + more == whole[:7]

    net, opt, gen, step, data, train = trainer()  # a new process would build these
    with fj.Checkpoint(
        tmp_path / "run", model=net, optimizer=opt, rng=gen, data=data, step=step
    ) as resumed:
        assert resumed.steps() == [5]
        assert resumed.restore() == 5
        assert int(step.value) == 5
        rest = [float(train(*next(data))) for _ in range(7)]
    assert first + rest == whole  # exactly: same weights, moments, count, keys and batches


def test_save_returns_before_the_write_and_later_steps_do_not_change_what_it_wrote(tmp_path):
    w = fj.Variable(np.arange(1 << 20, dtype=np.float32), name="w")

    @fj.compile
    def bump():
        w.assign(w * 2 + 1)  # (donates w's buffer)

    saved = np.asarray(w).copy()
    ckpt = fj.Checkpoint(tmp_path, [w])
    ckpt.save(1)
    for _ in range(3):
        bump()  # right away, while orbax may still be writing step 1
    ckpt.wait_until_finished()
    after = np.asarray(w).copy()
    assert ckpt.restore(1) == 1
    np.testing.assert_array_equal(np.asarray(w), saved)
    assert not np.array_equal(after, saved)
    ckpt.close()


def test_steps_max_to_keep_latest_and_bad_steps(tmp_path):
    w = fj.Variable(np.zeros((2, 2), np.float32), name="w")
    ckpt = fj.Checkpoint(tmp_path / "run", [w], max_to_keep=2)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        ckpt.restore()
    for step in (1, 3, 5):
        w.assign(np.full((2, 2), step, np.float32))
        assert ckpt.save(step) == str(tmp_path / "run" / str(step))
    with pytest.raises(CheckpointError, match="step 4 is below the latest saved step 5"):
        ckpt.save(4)
    ckpt.wait_until_finished()
    assert ckpt.steps() == [3, 5]
    assert ckpt.restore() == 5 and float(w.value[0, 0]) == 5
    assert ckpt.restore(3) == 3 and float(w.value[0, 0]) == 3
    with pytest.raises(CheckpointError, match=r"has no step 1; it has \[3, 5\]"):
        ckpt.restore(1)
    with pytest.raises(CheckpointError, match="step 5 is saved already"):
        ckpt.save(5)
    for bad in (-1, True, 1.5, "3"):
        with pytest.raises(CheckpointError, match="non-negative int"):
            ckpt.save(bad)
    with pytest.raises(CheckpointError, match="max_to_keep must be a positive int"):
        fj.Checkpoint(tmp_path / "other", [w], max_to_keep=0)
    with pytest.raises(CheckpointError, match="nothing to save"):
        fj.Checkpoint(tmp_path / "other")
    with pytest.raises(CheckpointError, match="save\\(step\\) needs a step"):
        ckpt.save()
    ckpt.close()


def test_plain_orbax_reads_a_flowjit_checkpoint(tmp_path):
    net = Net()
    ckpt = fj.Checkpoint(tmp_path, model=net)
    ckpt.save(3)
    ckpt.close()
    tree = ocp.PyTreeCheckpointer().restore(tmp_path / "3" / "state")
    kernel = tree["model"]["hidden"]["kernel"]
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(net.hidden.kernel))
    meta = json.loads((tmp_path / "3" / "flowjit" / "metadata").read_text())
    entry = meta["variables"]["model/hidden/kernel"]
    assert (entry["shape"], entry["dtype"]) == ([4, 8], "f32")
    bits = np.asarray(net.hidden.kernel).view(np.uint32).reshape(-1).astype(np.uint64)
    weights = 2 * np.arange(bits.size, dtype=np.uint64) + 1  # (the first sum, recomputed)
    assert entry["fingerprint"][0] == int((bits * weights).sum() % 2**32)


def test_a_restore_asks_for_each_group_exactly(tmp_path):
    net, opt = Net(), fj.optim.Adam(1e-3)
    opt.state(net.trainable_variables)
    with fj.Checkpoint(tmp_path, model=net, optimizer=opt) as first:
        first.save(1)
    fresh_opt = fj.optim.Adam(1e-3)  # no state made yet
    ckpt = fj.Checkpoint(tmp_path, model=Net(), optimizer=fresh_opt)
    with pytest.raises(CheckpointError, match="call opt.state\\(variables\\)"):
        ckpt.restore()

    class Small(fj.Module):
        def __init__(self):
            self.hidden = fj.nn.Dense(8, in_features=4, rng=0)

    with pytest.raises(CheckpointError, match="fewer variables than the saved one"):
        fj.Checkpoint(tmp_path, model=Small()).restore()

    class Wide(fj.Module):
        def __init__(self):
            self.hidden = fj.nn.Dense(9, in_features=4, rng=0)
            self.drop = fj.nn.Dropout(0.25)
            self.out = fj.nn.Dense(2, in_features=9, rng=1)

    wide = Wide()
    before = values(wide.variables)
    with pytest.raises(CheckpointError, match="'model/hidden/kernel' is saved as"):
        fj.Checkpoint(tmp_path, model=wide).restore()
    assert values(wide.variables).keys() == before.keys()
    for k, v in values(wide.variables).items():
        np.testing.assert_array_equal(v, before[k])


def flip_a_data_byte(folder: pathlib.Path) -> pathlib.Path:
    """Flip a byte in the middle of the largest data file of ``folder``'s state item."""
    files = [p for p in (folder / "state").rglob("*") if p.is_file()]
    target = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    target.write_bytes(bytes(raw))
    return target


def test_a_damaged_step_is_refused_and_changes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    w = fj.Variable(rng.standard_normal((256, 256)).astype(np.float32), name="w")
    b = fj.Variable(np.ones(256, np.float32), name="b")
    ckpt = fj.Checkpoint(tmp_path, [w, b])
    ckpt.save(1)
    ckpt.close()
    flip_a_data_byte(tmp_path / "1")
    w.assign(np.zeros((256, 256), np.float32))
    b.assign(np.zeros(256, np.float32))
    with pytest.raises(CheckpointError, match=str(tmp_path / "1")):
        fj.Checkpoint(tmp_path, [w, b]).restore()
    assert float(np.abs(np.asarray(w)).sum()) == 0 and float(np.asarray(b).sum()) == 0


def test_bytes_that_differ_from_the_saved_fingerprint_are_refused(tmp_path):
    """Data that reads back cleanly but is not what was saved (here: the saved fingerprint
    changed, as a silently corrupted chunk would change the data) is refused."""
    w = fj.Variable(np.arange(64, dtype=np.float32), name="w")
    with fj.Checkpoint(tmp_path, [w]) as ckpt:
        ckpt.save(1)
    path = tmp_path / "1" / "flowjit" / "metadata"
    meta = json.loads(path.read_text())
    meta["variables"]["w"]["fingerprint"][1] ^= 1
    path.write_text(json.dumps(meta))
    w.assign(np.zeros(64, np.float32))
    with pytest.raises(CheckpointError, match="'w' reads back other bytes than were saved"):
        fj.Checkpoint(tmp_path, [w]).restore()
    assert float(np.asarray(w).sum()) == 0


def hostile(tmp_path, kind: str) -> pathlib.Path:
    """A checkpoint folder whose latest step (9) is hostile in the way ``kind`` says."""
    w = fj.Variable(np.ones(4, np.float32), name="w")
    ckpt = fj.Checkpoint(tmp_path, [w])
    ckpt.save(1)
    ckpt.close()
    step = tmp_path / "9"
    if kind == "symlink to /dev/zero":
        os.symlink("/dev/zero", step)
    elif kind == "fifo":
        os.mkfifo(step)
    elif kind == "empty folder":
        step.mkdir()
    elif kind in ("sparse 100 GB file", "fifo inside", "garbage metadata", "hostile metadata"):
        import shutil

        shutil.copytree(tmp_path / "1", step)
        meta = step / "flowjit" / "metadata"
        if kind == "sparse 100 GB file":
            with open(step / "state" / "huge", "wb") as f:
                f.truncate(100 * 2**30)
        elif kind == "fifo inside":
            meta.unlink()
            os.mkfifo(meta)
        elif kind == "garbage metadata":
            meta.write_bytes(b"\xff\xfe{not json")
        else:
            bad = {"w": {"shape": [-1, 2**62], "dtype": "f32"}}
            meta.write_text(
                json.dumps({"format": "flowjit.checkpoint", "version": 2, "variables": bad})
            )
    return step


@pytest.mark.parametrize(
    "kind",
    [
        "symlink to /dev/zero",
        "fifo",
        "empty folder",
        "sparse 100 GB file",
        "fifo inside",
        "garbage metadata",
        "hostile metadata",
    ],
)
def test_a_hostile_latest_step_is_a_clear_error_in_bounded_time(tmp_path, kind):
    step = hostile(tmp_path, kind)
    w = fj.Variable(np.zeros(4, np.float32), name="w")
    start = time.monotonic()
    ckpt = fj.Checkpoint(tmp_path, [w])
    with pytest.raises(CheckpointError) as err:
        assert ckpt.restore() == 9  # (if the step is not listed, restore() reads step 1)
        raise AssertionError("restored a hostile step")
    assert time.monotonic() - start < 60
    assert str(step) in str(err.value) or str(tmp_path) in str(err.value)
    assert float(np.asarray(w).sum()) == 0  # unchanged
    assert ckpt.restore(1) == 1 and float(np.asarray(w).sum()) == 4  # the good step still is


def test_a_second_writer_on_a_folder_is_refused(tmp_path):
    w = fj.Variable(np.ones(4, np.float32), name="w")
    first = fj.Checkpoint(tmp_path, [w])
    first.save(1)
    second = fj.Checkpoint(tmp_path, [w])
    with pytest.raises(
        CheckpointError, match=f"being written by another fj.Checkpoint \\(process {os.getpid()}"
    ):
        second.save(2)
    first.wait_until_finished()
    assert second.restore() == 1  # reading is allowed
    first.close()
    second.save(2)  # the folder is free now
    second.close()
    assert fj.Checkpoint(tmp_path, [w]).steps() == [1, 2]


def test_data_needs_a_state_and_rng_takes_generators(tmp_path):
    w = fj.Variable(np.ones(4, np.float32), name="w")
    with pytest.raises(CheckpointError, match="has no state to save"):
        fj.Checkpoint(tmp_path, [w], data=iter([1, 2]))
    with pytest.raises(CheckpointError, match="rng= takes fj.random.Generator"):
        fj.Checkpoint(tmp_path, [w], rng=3)
    with pytest.raises(CheckpointError, match="step= takes a scalar Variable"):
        fj.Checkpoint(tmp_path, [w], step=5)


# -- crashes -------------------------------------------------------------------------------------
SAVER = pathlib.Path(__file__).with_name("checkpoint_saver.py")
_spec = importlib.util.spec_from_file_location("checkpoint_saver", SAVER)
saver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(saver)


def bits(array) -> np.ndarray:
    array = np.asarray(array)
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.itemsize > 1 else array


def test_sigkill_during_async_saves_always_leaves_a_whole_checkpoint(tmp_path):
    """A process saving asynchronous checkpoints, killed with SIGKILL at random moments, 20
    times: each time every step left restores to exactly its own contents, the latest is at
    least the last one known complete, and the next writer clears the killed one's temporary
    folders."""
    directory = tmp_path / "run"
    cells = [fj.Variable(v, name=n) for n, v in saver.contents(0).items()]
    with fj.Checkpoint(directory, cells, max_to_keep=saver.MAX_TO_KEEP) as ckpt:
        ckpt.save(0)
    rng = random.Random(20)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    mid_write = 0
    for run in range(20):
        first = fj.Checkpoint(directory, cells).steps()[-1] + 1
        child = subprocess.Popen(
            [sys.executable, str(SAVER), str(directory), str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = child.stdout.readline()  # the first save is queued: saves are under way
        assert line == f"queued {first}\n", child.communicate()[1][-3000:]
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        queued = [first] + [int(s) for tag, s in zip(out.split()[::2], out.split()[1::2])]
        # save(k + 1) waits for step k's write: every queued step but the last is complete
        known_complete = queued[-2] if len(queued) > 1 else first - 1
        mid_write += any(n.startswith(".flowjit-del") or "tmp" in n for n in os.listdir(directory))

        ckpt = fj.Checkpoint(directory, cells, max_to_keep=saver.MAX_TO_KEEP)
        steps = ckpt.steps()
        assert steps and known_complete <= steps[-1] <= queued[-1] + 1, (run, steps, queued)
        for step in steps:
            assert ckpt.restore(step) == step
            for cell in cells:
                np.testing.assert_array_equal(bits(cell), bits(saver.contents(step)[cell.name]))
        for cell in cells:  # the next writer: it clears the killed one's leftovers
            cell.assign(saver.contents(steps[-1] + 1)[cell.name])
        ckpt.save(steps[-1] + 1)
        ckpt.close()
        assert sorted(os.listdir(directory))[0] == ".flowjit-writer"
        assert not any("tmp" in name for name in os.listdir(directory))
    print(f"\nSIGKILL: 20 kills, {mid_write} while a save was being written")
    assert mid_write >= 5  # (the test means something only if kills land inside writes)


# -- several processes, another mesh ---------------------------------------------------------------
PROCESSES_SCRIPT = pathlib.Path(__file__).with_name("checkpoint_processes_script.py")


def run_processes(count: int, folder: pathlib.Path, mode: str) -> None:
    """The script as ``count`` processes on localhost (killed after 240 s); asserts each
    exited cleanly, showing their output otherwise."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    logs = [folder / f"{mode}-{i}.log" for i in range(count)]
    procs = []
    for i, log in enumerate(logs):
        with open(log, "w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(PROCESSES_SCRIPT), port, str(i), str(count)]
                    + [str(folder), mode],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for proc in procs:
            proc.wait(timeout=240)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = "\n".join(log.read_text()[-3000:] for log in logs)
    assert all(p.returncode == 0 for p in procs), outputs


def test_two_processes_write_their_own_shards_and_another_mesh_reads_them(tmp_path):
    run_processes(2, tmp_path, "save")
    saves = [json.loads((tmp_path / f"save-{i}.json").read_text()) for i in range(2)]
    assert [s["local_devices"] for s in saves] == [4, 4]
    assert saves[0]["shard_folders"] == ["ocdbt.process_0", "ocdbt.process_1"]
    written = [s["bytes_in_own_shard_folder"] for s in saves]
    total = (512 * 256 + 256 * 128) * 4 * 3  # the parameters and Adam's two moments
    for part in written:  # each process wrote about its half, not the whole
        assert 0.35 * total < part < 0.75 * total, written
    assert saves[0]["checksums"] == saves[1]["checksums"]
    # fj.data.prefetch over the two processes: each gave its half, the array is global
    whole = np.arange(32, dtype=np.float32).reshape(8, 4).tolist()
    assert [s["prefetch_global_shape"] for s in saves] == [[8, 4], [8, 4]]
    assert saves[0]["prefetch_whole"] == whole == saves[1]["prefetch_whole"]
    for devices, axis in ((2, "model"), (4, "data")):
        run_processes(1, tmp_path, f"restore-{devices}-{axis}")
        back = json.loads((tmp_path / "restore.json").read_text())
        assert back["step"] == 1 and back["devices"] == devices
        assert back["w_shards"] == devices
        assert back["checksums"] == saves[0]["checksums"]


def test_an_orbax_checkpoint_of_a_flax_program_restores_into_variables_by_path(tmp_path):
    rng = np.random.default_rng(0)
    params = {  # as flax's model.init gives them, saved the plain orbax way
        "hidden": {"kernel": rng.standard_normal((4, 8)), "bias": np.zeros(8)},
        "out": {"kernel": rng.standard_normal((8, 2)), "bias": np.ones(2)},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    with ocp.StandardCheckpointer() as writer:
        writer.save(tmp_path / "flax", {"params": params, "step": jnp.int32(7)})
    net = Net()
    fj.restore(tmp_path / "flax", {"params": net})  # params/hidden/kernel -> hidden/kernel
    np.testing.assert_array_equal(np.asarray(net.hidden.kernel), params["hidden"]["kernel"])
    np.testing.assert_array_equal(np.asarray(net.out.bias), params["out"]["bias"])
    with pytest.raises(CheckpointError, match="no array at path 'weights/hidden/kernel'"):
        fj.restore(tmp_path / "flax", {"weights": net})
    wide = fj.Variable(np.zeros((4, 9), np.float32))
    with pytest.raises(CheckpointError, match="'params/hidden/kernel' is saved as f32\\[4,8\\]"):
        fj.restore(tmp_path / "flax", {"params/hidden/kernel": wide})
    assert float(np.abs(np.asarray(wide)).sum()) == 0


def test_ctrl_c_during_saves_and_restores_loses_nothing(tmp_path):
    """SIGINT (Ctrl-C) at random moments of 40 saves and restores: after each, the variables
    hold one step's values, all of them (never a mix), readable; every step saved reads
    back whole; saving and restoring go on working."""
    a = fj.Variable(np.zeros(1 << 18, np.float32), name="a")
    b = fj.Variable(np.zeros(1 << 18, np.float32), name="b")
    ckpt = fj.Checkpoint(tmp_path, [a, b], max_to_keep=None)

    def set_step(k: int) -> None:
        a.assign(np.full(1 << 18, k, np.float32))
        b.assign(np.full(1 << 18, -k, np.float32))

    set_step(1)
    ckpt.save(1)
    ckpt.wait_until_finished()
    rng = random.Random(0)
    interrupted, step = 0, 1
    for i in range(40):
        if i % 2:
            step += 1
            set_step(step)  # (before the Ctrl-C can come: the save itself changes nothing)
        timer = threading.Timer(rng.uniform(0.0, 0.05), os.kill, (os.getpid(), signal.SIGINT))
        inside = False
        try:
            timer.start()
            inside = True
            if i % 2:
                ckpt.save(step)
                ckpt.wait_until_finished()
            else:
                ckpt.restore(rng.choice(ckpt.steps()))
            inside = False
            timer.join()  # (the signal is sent by now: Python runs its handler here, in the try)
            time.sleep(0.01)
        except KeyboardInterrupt:
            interrupted += inside
            timer.join()
        k = float(np.asarray(a)[0])
        assert np.all(np.asarray(a) == k) and np.all(np.asarray(b) == -k), i  # all one step
    for saved in ckpt.steps():  # whatever was interrupted, what is listed reads back whole
        assert ckpt.restore(saved) == saved
        assert np.all(np.asarray(a) == saved) and np.all(np.asarray(b) == -saved)
    ckpt.close()
    assert interrupted >= 5  # (Ctrl-Cs did land inside the calls)


def test_a_flat_list_of_variables_and_their_slots_saves_and_plain_orbax_reads_it(tmp_path):
    """ "w" and its slot "w/mu" in one flat list: the variable goes under the folder's
    __value__ key."""
    w = fj.Variable(np.arange(4, dtype=np.float32), name="w")
    opt = fj.optim.Adam(0.1)
    opt.state([w])
    with fj.Checkpoint(tmp_path, [w, *opt.variables()]) as ckpt:
        ckpt.save(1)
    w.assign(np.zeros(4, np.float32))
    with fj.Checkpoint(tmp_path, [w]) as ckpt:  # a subset: w alone
        assert ckpt.restore() == 1
    np.testing.assert_array_equal(np.asarray(w), np.arange(4))
    tree = ocp.PyTreeCheckpointer().restore(tmp_path / "1" / "state")
    assert sorted(tree["w"]) == ["__value__", "count", "mu", "nu"]


def test_a_step_without_the_data_state_asked_for_changes_nothing(tmp_path):
    w = fj.Variable(np.ones(4, np.float32), name="w")
    with fj.Checkpoint(tmp_path, [w]) as ckpt:
        ckpt.save(1)  # without data=
    w.assign(np.zeros(4, np.float32))
    data = fj.data.prefetch(loader())
    with pytest.raises(CheckpointError, match="holds no data state"):
        fj.Checkpoint(tmp_path, [w], data=data).restore()
    assert float(np.asarray(w).sum()) == 0  # unchanged
    data.close()


def test_the_code_path_of_a_bucket_url_on_a_local_folder(tmp_path):
    """A gs:// folder (no bucket here) lists its steps and reads a step's metadata through
    orbax's manager rather than the local file system, and takes no writer lock: that path,
    run on a local folder."""
    w = fj.Variable(np.zeros(4, np.float32), name="w")
    ckpt = fj.Checkpoint(tmp_path, [w], max_to_keep=2)
    ckpt._manager._local = False  # (as for a URL)
    for step in (1, 2, 3):
        w.assign(np.full(4, step, np.float32))
        ckpt.save(step)
    ckpt.wait_until_finished()
    assert ckpt.steps() == [2, 3]
    assert not (tmp_path / ".flowjit-writer").exists()
    ckpt.restore(2)
    np.testing.assert_array_equal(np.asarray(w), np.full(4, 2, np.float32))
    ckpt.restore()
    np.testing.assert_array_equal(np.asarray(w), np.full(4, 3, np.float32))
    with pytest.raises(CheckpointError, match="has no step 1"):
        ckpt.restore(1)
    ckpt.close()
