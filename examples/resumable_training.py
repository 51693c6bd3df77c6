"""Training that survives being killed: an MLP with dropout on scikit-learn's digits, fed by
a shuffled Grain loader through fj.data.prefetch, checkpointed with fj.Checkpoint (model,
Adam's moments, the dropout generator, the step counter and the loader's position). Run it
again after a kill and it resumes from the latest checkpoint, on the same batches.

    python examples/resumable_training.py --dir runs/digits [--steps N] [--save-every K]
        [--kill-at S]    # SIGKILL itself at step S (a preempted machine, say)
    python examples/resumable_training.py --compare [--steps N] [--save-every K] [--kill-at S]
        # an uninterrupted run, and one killed at step S then run again, side by side
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile

from _digits import load

import flowjit as fj


class Net(fj.Module):
    def __init__(self, gen: fj.random.Generator, hidden: int = 128):
        self.hidden = fj.nn.Dense(hidden, in_features=64, rng=0)
        self.drop = fj.nn.Dropout(0.2, rng=gen)
        self.out = fj.nn.Dense(10, in_features=hidden, rng=1)

    def __call__(self, x):
        return self.out(self.drop(fj.nn.relu(self.hidden(x))))


def train(directory: str, steps: int, save_every: int, kill_at: int | None) -> None:
    """Train to ``steps``, resuming from ``directory``'s latest checkpoint if it has one;
    print each step's loss."""
    import grain

    x, y, _, _ = load()
    x = x.reshape(len(x), -1)
    gen = fj.random.Generator(0)
    net, opt = Net(gen), fj.optim.Adam(3e-3)
    opt.state(net.trainable_variables)  # (made now, so that a restore finds it)
    step = fj.Variable(0, name="step", trainable=False)
    loader = (
        grain.MapDataset.range(len(y))
        .shuffle(seed=0)
        .map(lambda i: (x[i], y[i]))
        .batch(64, drop_remainder=True)
        .repeat(None)
    )
    data = fj.data.prefetch(loader, size=2)

    @fj.compile
    def train_step(images, labels):
        loss = fj.nn.softmax_cross_entropy(net(images), labels).mean()
        opt.apply(fj.gradients(loss, net.trainable_variables), net.trainable_variables)
        step.assign_add(1)
        return loss

    with fj.Checkpoint(
        directory, model=net, optimizer=opt, rng=gen, data=data, step=step, max_to_keep=2
    ) as ckpt:
        if ckpt.steps():
            print(f"resumed from step {ckpt.restore()}", flush=True)
        while int(step.value) < steps:
            loss = float(train_step(*next(data)))
            done = int(step.value)
            print(f"step {done} loss {loss!r}", flush=True)
            if done % save_every == 0:
                ckpt.save()  # (returns once the values are in host memory)
            if done == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup at all: a lost machine
    data.close()


def losses(output: str) -> dict[int, float]:
    return {
        int(line.split()[1]): float(line.split()[3])
        for line in output.splitlines()
        if line.startswith("step ")
    }


def compare(steps: int, save_every: int, kill_at: int) -> None:
    """Run once without a break and once killed at ``kill_at`` then run again; print both
    loss curves and whether they are equal, bit for bit."""

    def run(directory: str, *extra: str) -> subprocess.CompletedProcess:
        args = ["--dir", directory, "--steps", str(steps), "--save-every", str(save_every)]
        return subprocess.run(
            [sys.executable, __file__, *args, *extra], capture_output=True, text=True
        )

    with tempfile.TemporaryDirectory() as folder:
        whole = run(os.path.join(folder, "whole"))
        killed = run(os.path.join(folder, "killed"), "--kill-at", str(kill_at))
        again = run(os.path.join(folder, "killed"))
    if whole.returncode != 0 or again.returncode != 0:
        sys.exit(f"a run failed:\n{whole.stderr[-2000:]}\n{again.stderr[-2000:]}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed_from = int(again.stdout.split("resumed from step ")[1].split()[0])
    uninterrupted, first, second = losses(whole.stdout), losses(killed.stdout), losses(again.stdout)
    print(
        f"killed at step {kill_at}; the run again resumed from step {resumed_from}, the latest "
        "step whose save had finished\n"
    )
    print("| step | uninterrupted | killed run | run again |\n|---:|---:|---:|---:|")
    shown = sorted({1, *range(save_every, steps + 1, save_every), kill_at, resumed_from + 1})
    for k in shown:
        cells = [uninterrupted[k], first.get(k), second.get(k)]
        print(f"| {k} | " + " | ".join("" if v is None else f"{v:.6f}" for v in cells) + " |")
    same = all(first[k] == uninterrupted[k] for k in first) and all(
        second[k] == uninterrupted[k] for k in second
    )
    print(f"\nevery loss of both pieces equals the uninterrupted run's, bit for bit: {same}")
    if not same:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", help="the checkpoint folder (resumed from if it has steps)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--kill-at", type=int, help="SIGKILL this process after that step")
    parser.add_argument("--compare", action="store_true")
    opts = parser.parse_args()
    if opts.compare:
        kill_at = opts.kill_at or (opts.steps // 2 + opts.save_every // 2)
        compare(opts.steps, opts.save_every, kill_at)
    elif opts.dir:
        train(opts.dir, opts.steps, opts.save_every, opts.kill_at)
    else:
        parser.error("give --dir DIR (train, resuming) or --compare")


if __name__ == "__main__":
    main()
