"""flowjit's benchmark suite: one command that runs every workload of workloads.py for
flowjit, jax.jit and (when installed) TensorFlow, each peer in its own process, and prints a
markdown table (per row and peer the min and median, the flowjit/jax.jit ratio of medians
against its goal, and whether the peers' losses agree) and optionally writes all raw figures
as JSON.

    python bench/suite/suite.py [--quick] [--json out.json] [--tf-python PATH]

Rows: per-call dispatch of a compiled ``x + 1``; the MLP, CNN and LSTM training steps; the
first call (trace + compile + run) of the MLP and LSTM steps in a fresh process; for flowjit
and jax.jit the MLP's first call again in a second process with a warm persistent cache, and
both first calls again timed after the runtime's start-up (peer_common.start_runtime: what
jax does once per process, which no cache saves), with the start-up's own time; peak RSS of
the MLP run; the pass pipeline's time against graph size (flowjit only).

Peer protocol: ``PYTHON PEER.py WORKLOAD [--steps N] [--rounds R] [--warmup W]`` prints one
line ``RESULT {json}`` with keys peer, workload, version, round_seconds (seconds of each
round of ``steps`` steps, the device work finished at each round's end), per_step_seconds,
first_call_seconds, losses (the first workloads.CHECKED_STEPS losses from the initial
weights on workloads.batches(name, CHECKED_STEPS), computed before timing) and peak_rss_mb.
The peers are flowjit_peer.py, jax_peer.py and tf_peer.py (run twice, plainly and with
``--jit``). TensorFlow's interpreter is ``--tf-python``, else $FLOWJIT_TF_PYTHON, else
/work/tfenv/bin/python if it exists.

Every flowjit and jax.jit process gets a fresh, empty persistent compilation cache
(FLOWJIT_CACHE_DIR; JAX_COMPILATION_CACHE_DIR with flowjit's 10 ms threshold), so that its
first calls compile and write the cache; the warm-cache rows run compile_mlp a second time on
the folder the first run filled.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import workloads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REFERENCE = "jax.jit"  # ratios and loss checks are against this peer
TF_PLAIN, TF_JIT = "tf.function", "tf.function(jit_compile)"
DEFAULT_TF_PYTHON = "/work/tfenv/bin/python"
CACHE_MIN_COMPILE_SECONDS = "0.01"  # flowjit's (runtime/config.py), given to jax.jit's cache too
TIMEOUT_S = 900

# workload -> (steps per round, rounds, warmup steps); on an idle 2-core CPU the full
# suite takes about 4 minutes with TensorFlow (5.5 on a busy machine), --quick about 1.5
FULL = {
    "dispatch": (10_000, 15, 1_000),
    "mlp": (100, 10, 10),
    "cnn": (10, 10, 2),
    "lstm": (5, 10, 2),
    "gpt_small": (5, 7, 2),
    "gpt_small_bf16": (5, 7, 2),
    "gpt_medium": (2, 5, 1),
    "gpt_medium_bf16": (2, 5, 1),
    **{name: (200, 10, 20) for name in ("adam_1", "adam_10", "adam_100", "adam_400")},
}
QUICK = {
    "dispatch": (2_000, 5, 200),
    "mlp": (20, 5, 5),
    "cnn": (3, 3, 1),
    "lstm": (2, 3, 1),
    "gpt_small": (2, 3, 1),
    "gpt_small_bf16": (2, 3, 1),
    "gpt_medium": (1, 3, 1),
    "gpt_medium_bf16": (1, 3, 1),
    **{name: (50, 3, 5) for name in ("adam_1", "adam_10", "adam_100", "adam_400")},
}
GPTS = ("gpt_small", "gpt_small_bf16", "gpt_medium", "gpt_medium_bf16")
ADAMS = ("adam_1", "adam_10", "adam_100", "adam_400")
FIRST_CALLS = ("compile_gpt_small", "compile_gpt_medium", *(f"compile_{a}" for a in ADAMS))
FSDP = {"full": ("small", 5, 5), "quick": ("tiny", 2, 2)}  # size, steps, rounds
COMPILE_REPEATS = {"full": 3, "quick": 1}  # fresh processes per peer for the compile rows
# processes per peer for the GPT and Adam step rows, whose goals (1.0x, 1.05x) are within
# this 2-core machine's drift between two processes run one after the other (10-30%)
STEP_REPEATS = {"full": 3, "quick": 1}
PIPELINE = {"full": ("1000,10000,100000", 3), "quick": ("1000,10000", 2)}  # sizes, rounds


# peers ---------------------------------------------------------------------------------


@dataclass
class Peer:
    name: str
    argv: list[str]  # the command, without the workload's arguments
    extra: list[str] = field(default_factory=list)  # after the workload's arguments
    missing: str | None = None  # why it cannot run
    cache_vars: Callable[[str], dict[str, str]] | None = None  # env pointing its cache at a folder

    @property
    def caches(self) -> bool:
        return self.cache_vars is not None


def flowjit_cache(folder: str) -> dict[str, str]:
    return {"FLOWJIT_CACHE_DIR": folder}


def jax_cache(folder: str) -> dict[str, str]:
    return {
        "JAX_COMPILATION_CACHE_DIR": folder,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": CACHE_MIN_COMPILE_SECONDS,
    }


def tf_python(option: str | None) -> str | None:
    """TensorFlow's interpreter: --tf-python, $FLOWJIT_TF_PYTHON, or the default venv."""
    if option or os.environ.get("FLOWJIT_TF_PYTHON"):
        return option or os.environ["FLOWJIT_TF_PYTHON"]
    return DEFAULT_TF_PYTHON if Path(DEFAULT_TF_PYTHON).exists() else None


def tf_missing(python: str | None) -> str | None:
    """Why the TensorFlow peer cannot run, or None."""
    if python is None:
        return "not installed"
    if not (HERE / "tf_peer.py").exists():
        return "tf_peer.py missing"
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"
    try:
        subprocess.run([python, "-c", probe], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return f"not installed (no tensorflow for {python})"
    return None


def make_peers(tf_option: str | None) -> list[Peer]:
    python = tf_python(tf_option)
    missing = tf_missing(python)
    tf_argv = [python or "python", str(HERE / "tf_peer.py")]
    return [
        Peer(
            "flowjit",
            [sys.executable, str(HERE / "flowjit_peer.py")],
            cache_vars=flowjit_cache,
        ),
        Peer(REFERENCE, [sys.executable, str(HERE / "jax_peer.py")], cache_vars=jax_cache),
        Peer(TF_PLAIN, tf_argv, missing=missing),
        Peer(TF_JIT, tf_argv, ["--jit"], missing=missing),
    ]


# running -------------------------------------------------------------------------------


class Runner:
    """Runs peer processes one at a time (they would compete for the cores), logging each
    to stderr, and collects results[workload][peer] = [result per process]."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.started = time.perf_counter()
        self.load_at_start = os.getloadavg()  # another job on the cores skews every figure
        self.results: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        self.fsdp_checks: dict | None = None  # bench/gpt_fsdp.py's checks, when it ran

    def run(self, peer: Peer, workload: str, args: list[str], key: str = "", cache: str = ""):
        """Run ``peer`` on ``workload`` and record its result under ``key`` (default: the
        workload). A process of a peer with a persistent cache uses the folder ``cache``, else
        a fresh one."""
        if peer.missing:
            return
        with tempfile.TemporaryDirectory(prefix="flowjit-cache-") as fresh:
            env = peer_env(peer, cache or fresh)
            result = self._process(peer, [workload, *args, *peer.extra], env)
        self.results[key or workload][peer.name].append(result)

    def _process(self, peer: Peer, argv: list[str], env: dict) -> dict:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                peer.argv + argv,
                check=False,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            result = parse_result(done)
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {self.timeout:.0f} s"}
        except OSError as error:
            result = {"error": str(error)}
        result["process_seconds"] = time.perf_counter() - start
        status = result.get("error", "ok")
        print(
            f"[{time.perf_counter() - self.started:6.1f} s] {peer.name} {' '.join(argv)}: "
            f"{status} ({result['process_seconds']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        return result


def peer_env(peer: Peer, cache_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if peer.cache_vars is not None:
        env.update(peer.cache_vars(cache_dir))
    return env


def parse_result(done: subprocess.CompletedProcess) -> dict:
    """The peer's RESULT line as a dict, or {"error": ..., "stderr_tail": ...}."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode == 0 and lines:
        try:
            return json.loads(lines[-1][len("RESULT ") :])
        except json.JSONDecodeError as error:
            return {"error": f"bad RESULT line: {error}"}
    tail = done.stderr.strip().splitlines()[-8:]
    last = tail[-1] if tail else "no output"
    reason = f"exit {done.returncode}" if done.returncode else "no RESULT line"
    return {"error": f"{reason}: {last[:160]}", "stderr_tail": tail}


def step_args(settings: dict, workload: str) -> list[str]:
    steps, rounds, warmup = settings[workload]
    return ["--steps", str(steps), "--rounds", str(rounds), "--warmup", str(warmup)]


def run_all(runner: Runner, peers: list[Peer], mode: str, only: set[str] | None) -> None:
    """Every row's processes, peer after peer within a row."""
    settings = QUICK if mode == "quick" else FULL
    for workload in ("dispatch", "mlp", "cnn", "lstm", *GPTS, *ADAMS):
        if only is None or workload in only:
            repeats = STEP_REPEATS[mode] if workload in (*GPTS, *ADAMS) else 1
            for _ in range(repeats):  # (peers alternate: a drift in machine speed hits both)
                for peer in peers:
                    if workload in ("dispatch", "mlp", "cnn", "lstm") or not peer.name.startswith(
                        "tf"
                    ):
                        runner.run(peer, workload, step_args(settings, workload))
    for workload in ("compile_mlp", "compile_lstm", *FIRST_CALLS):
        if only is None or workload in only:
            for _ in range(COMPILE_REPEATS[mode]):
                for peer in peers:
                    if workload in ("compile_mlp", "compile_lstm") or not peer.name.startswith(
                        "tf"
                    ):
                        run_compile(runner, peer, workload)
    if only is None or "fsdp_gpt" in only:
        run_fsdp(runner, *FSDP[mode])
    if only is None or "pipeline" in only:
        sizes, rounds = PIPELINE[mode]
        runner.run(peers[0], "pipeline", ["--sizes", sizes, "--rounds", str(rounds)])


def run_fsdp(runner: Runner, size: str, steps: int, rounds: int) -> None:
    """bench/gpt_fsdp.py in its own process (it simulates 8 devices): its figures for both
    peers go under "fsdp_gpt", as a peer process's would."""
    argv = [sys.executable, str(ROOT / "bench" / "gpt_fsdp.py"), "--size", size,
            "--steps", str(steps), "--rounds", str(rounds)]  # fmt: skip
    fsdp = Peer("gpt_fsdp.py", argv)
    report = runner._process(fsdp, [], peer_env(fsdp, ""))
    if "error" in report:
        for name in ("flowjit", REFERENCE):
            runner.results["fsdp_gpt"][name].append({"error": report["error"]})
        return
    for name in ("flowjit", REFERENCE):
        runner.results["fsdp_gpt"][name].append(
            {
                "per_step_seconds": report["per_step_seconds"][name],
                "losses": report["losses"][name],
                "collectives": report["collectives"][name],
            }
        )
    runner.fsdp_checks = {
        k: report[k]
        for k in ("size", "devices", "collectives", "same_kinds", "none_more",
                  "parameters_split_8_ways", "optimizer_state_sharded")
    }  # fmt: skip


def run_compile(runner: Runner, peer: Peer, workload: str) -> None:
    """One fresh process; for the MLP of a peer with a persistent cache, a second on the
    cache folder the first filled, and the same pair again with the runtime started first."""
    if not (peer.caches and workload == "compile_mlp"):
        runner.run(peer, workload, [])
        return
    for key, args in (("compile_mlp", []), ("compile_mlp_started", ["--started"])):
        with tempfile.TemporaryDirectory(prefix="flowjit-cache-") as cache:
            runner.run(peer, workload, args, key=key, cache=cache)
            runner.run(peer, workload, args, key=f"{key}_warm", cache=cache)


# rows ----------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    workload: str  # the results key its figures come from
    unit: str
    values: Callable[[dict], list[float]]  # one result's figures, in ``unit``
    goal: float | None = None  # the most flowjit/jax.jit may be (of medians)
    goal_text: str = ""
    throughput: bool = False  # a step time: its ratio is the inverse of the throughput's
    loss_sources: tuple[str, ...] = ()  # results keys whose losses must agree
    peers: tuple[str, ...] | None = None  # the peers it has figures of (None: all)
    warm_of: str | None = None  # a warm-cache row: the results key of the cold first calls
    tf_goal: float | None = None  # the most flowjit/tf.function may be (of medians)
    loss_rtol: float = workloads.LOSS_RTOL  # how far the peers' losses may differ


def per_step(scale: float) -> Callable[[dict], list[float]]:
    return lambda r: [s * scale for s in r["per_step_seconds"]]


def first_call(r: dict) -> list[float]:
    return [r["first_call_seconds"]]


def rss(r: dict) -> list[float]:
    return [r["peak_rss_mb"]]


def startup(r: dict) -> list[float]:
    return [r["startup_seconds"]]


STEP_GOAL, STEP_GOAL_TEXT = 1 / 0.97, "throughput >= 0.97x jax"


def step_row(label: str, workload: str) -> Row:
    return Row(label, workload, "ms", per_step(1e3), STEP_GOAL, STEP_GOAL_TEXT, True, (workload,))


def compile_row(label: str, workload: str, **more) -> Row:
    return Row(label, workload, "s", first_call, 1.1, "<= 1.1x jax", **more)


CACHING = ("flowjit", REFERENCE)  # the peers with a persistent compilation cache


def warm_row(label: str, cold: str) -> Row:
    return Row(
        label,
        f"{cold}_warm",
        "s",
        first_call,
        0.2,
        "flowjit warm <= 0.2x cold",
        loss_sources=(f"{cold}_warm", cold),
        peers=CACHING,
        warm_of=cold,
    )


ROWS = [
    Row(
        "null-step dispatch `x + 1`, per call (µs)",
        "dispatch",
        "µs",
        per_step(1e6),
        1.3,
        "<= 1.3x jax",
        tf_goal=0.5,
        loss_sources=("dispatch",),
    ),
    step_row("MLP step (ms)", "mlp"),
    Row(
        "CNN step (ms)",
        "cnn",
        "ms",
        per_step(1e3),
        0.5,
        "time <= 0.5x jax",
        throughput=True,
        loss_sources=("cnn",),
        tf_goal=1.0,
    ),
    step_row("LSTM step (ms)", "lstm"),
    compile_row("MLP first call, fresh process (s)", "compile_mlp", loss_sources=("compile_mlp",)),
    compile_row(
        "LSTM first call, fresh process (s)", "compile_lstm", loss_sources=("compile_lstm",)
    ),
    warm_row("MLP first call, second process, warm cache (s)", "compile_mlp"),
    Row(
        "runtime start-up, once per process (s)",
        "compile_mlp_started",
        "s",
        startup,
        peers=CACHING,
    ),
    compile_row(
        "MLP first call after the start-up, fresh process (s)",
        "compile_mlp_started",
        loss_sources=("compile_mlp_started",),
        peers=CACHING,
    ),
    warm_row("MLP first call after the start-up, warm cache (s)", "compile_mlp_started"),
    Row("MLP run peak RSS (MB)", "mlp", "MB", rss, 1.1, "<= 1.1x jax", loss_sources=("mlp",)),
]


def gpt_rows(name: str, label: str) -> list[Row]:
    """A GPT's step, first call (f32 only) and peak RSS, each <= 1.0x jax.jit's."""
    # (bfloat16: flax's attention takes its softmax in bfloat16, flowjit's in float32)
    rtol = GPT_BF16_LOSS_RTOL if name.endswith("bf16") else workloads.LOSS_RTOL
    rows = [
        Row(
            f"GPT {label} step (ms)",
            name,
            "ms",
            per_step(1e3),
            1.0,
            "<= 1.0x jax",
            True,
            (name,),
            peers=JAX_PEERS,
            loss_rtol=rtol,
        )
    ]
    if not name.endswith("bf16"):
        rows.append(
            Row(
                f"GPT {label} first call, fresh process (s)",
                f"compile_{name}",
                "s",
                first_call,
                1.0,
                "<= 1.0x jax",
                loss_sources=(f"compile_{name}",),
                peers=JAX_PEERS,
            )
        )
    rows.append(
        Row(f"GPT {label} run peak RSS (MB)", name, "MB", rss, 1.0, "<= 1.0x jax", peers=JAX_PEERS)
    )
    return rows


GPT_BF16_LOSS_RTOL = 1e-2
JAX_PEERS = ("flowjit", REFERENCE)  # (the GPT and Adam workloads have no TensorFlow peer)
for _name, _label in (
    ("gpt_small", "small f32"), ("gpt_small_bf16", "small bf16"),
    ("gpt_medium", "medium f32"), ("gpt_medium_bf16", "medium bf16"),
):  # fmt: skip
    ROWS += gpt_rows(_name, _label)
for _name in ADAMS:
    _n = _name.split("_")[1]
    ROWS += [
        Row(f"Adam over {_n} variables of 64 floats, step (µs)", _name, "µs", per_step(1e6),
            1.05, "<= 1.05x jax", True, (_name,), peers=JAX_PEERS),
        Row(f"Adam over {_n} variables, first call, fresh process (s)", f"compile_{_name}", "s",
            first_call, 1.0, "<= 1.0x jax", loss_sources=(f"compile_{_name}",),
            peers=JAX_PEERS),
    ]  # fmt: skip
ROWS.append(
    Row("FSDP GPT step on 8 devices (ms)", "fsdp_gpt", "ms", per_step(1e3), 1 / 0.95,
        "throughput >= 0.95x jax", True, ("fsdp_gpt",), peers=JAX_PEERS)
)  # fmt: skip


def summarize(results: list[dict], values: Callable[[dict], list[float]]) -> dict:
    """One peer's figures for a row: all values over its processes, min and median, or the
    first error."""
    errors = [r for r in results if "error" in r]
    if errors or not results:
        return {"error": errors[0]["error"] if errors else "no result"}
    figures = [v for r in results for v in values(r)]
    if not figures:
        return {"error": "no figures"}
    return {"values": figures, "min": min(figures), "median": statistics.median(figures)}


def losses_agree(
    results: dict, sources: tuple[str, ...], rtol: float = workloads.LOSS_RTOL
) -> dict:
    """Whether every process's losses match the reference's (jax.jit, else the first) within
    ``rtol``, over workloads.CHECKED_STEPS steps or as many as both report."""
    runs = [
        (peer, r["losses"])
        for key in sources
        for peer, rs in results.get(key, {}).items()
        for r in rs
        if r.get("losses")
    ]
    if len({peer for peer, _ in runs}) < 2:
        return {"agree": None, "text": "n.a."}
    ref = next((losses for p, losses in runs if p == REFERENCE), runs[0][1])
    worst: dict[str, float] = {}
    fewer: dict[str, int] = {}
    for peer, losses in runs:
        n = min(len(losses), len(ref))
        if n < workloads.CHECKED_STEPS:
            fewer[peer] = min(n, fewer.get(peer, n))
        if not np.allclose(losses[:n], ref[:n], rtol=rtol, atol=0):
            diff = np.max(np.abs(np.subtract(losses[:n], ref[:n])) / np.abs(ref[:n]))
            worst[peer] = max(worst.get(peer, 0.0), float(diff))
    text = (
        "yes"
        if not worst
        else "no: " + ", ".join(f"{p} (max rel. diff {d:.1e})" for p, d in worst.items())
    )
    if fewer:
        text += " (" + ", ".join(f"{p}: first {n} only" for p, n in fewer.items()) + ")"
    return {"agree": not worst, "text": text, "max_rel_diff": worst, "fewer_steps": fewer}


def ratio(cells: dict, a: str, b: str) -> float | None:
    if "median" in cells.get(a, {}) and "median" in cells.get(b, {}):
        return cells[a]["median"] / cells[b]["median"]
    return None


def judge(value: float | None, goal: float) -> str:
    if value is None:
        return "n.a."
    return "met" if value <= goal else f"MISSED by {(value / goal - 1) * 100:.1f}%"


def build_row(row: Row, results: dict, peers: list[Peer]) -> dict:
    cells = {
        p.name: summarize(results.get(row.workload, {}).get(p.name, []), row.values)
        for p in peers
        if row.peers is None or p.name in row.peers
    }
    out = {"label": row.label, "unit": row.unit, "peers": cells}
    if row.warm_of is not None:
        warm_cold = {}
        for name, warm in cells.items():
            cold = summarize(results.get(row.warm_of, {}).get(name, []), first_call)
            warm_cold[name] = ratio({"warm": warm, "cold": cold}, "warm", "cold")
        r = warm_cold.get("flowjit")
        shown = ", ".join(f"{n} {x:.2f}" for n, x in warm_cold.items() if x is not None)
        out |= {"ratio": r, "warm_cold": warm_cold, "ratio_text": f"warm/cold: {shown or 'n.a.'}"}
        out["goal"] = f"{row.goal_text}: {judge(r, row.goal)}"
    else:
        r = ratio(cells, "flowjit", REFERENCE)
        out |= {"ratio": r, "ratio_text": ratio_text(r, row.throughput)}
        out["goal"] = goal_text(row, r, ratio(cells, "flowjit", TF_PLAIN))
    out["losses"] = losses_agree(results, row.loss_sources, row.loss_rtol)
    return out


def ratio_text(r: float | None, throughput: bool) -> str:
    if r is None:
        return "n.a."
    return f"time {r:.3f} (throughput {1 / r:.3f}x)" if throughput else f"{r:.3f}"


def goal_text(row: Row, r: float | None, vs_tf: float | None) -> str:
    if row.goal is None:
        return ""
    text = f"{row.goal_text}: {judge(r, row.goal)}"
    if row.tf_goal is not None:
        tf = "n.a." if vs_tf is None else f"{vs_tf:.2f}x, {judge(vs_tf, row.tf_goal)}"
        text += f"; <= {row.tf_goal:g}x tf.function: {tf}"
    return text


def pipeline_rows(results: dict) -> list[dict]:
    """One row per graph size: ops, seconds (min, median), and growth over the last size."""
    runs = results.get("pipeline", {}).get("flowjit", [])
    if not runs or "error" in runs[0]:
        error = runs[0]["error"] if runs else "not run"
        return [{"label": "pass pipeline", "error": error}]
    rows, last = [], None
    for size in runs[0]["pipeline"]:
        seconds = size["round_seconds"]
        row = {
            "label": f"pass pipeline, {size['ops']:,} ops -> {size['ops_after']:,} (s)",
            "ops": size["ops"],
            "min": min(seconds),
            "median": statistics.median(seconds),
            "values": seconds,
        }
        if last:
            row["growth"] = (row["median"] / last["median"], row["ops"] / last["ops"])
        rows.append(row)
        last = row
    return rows


# printing ------------------------------------------------------------------------------


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def note(notes: list[str], text: str) -> int:
    """The number of note ``text``, added if new."""
    if text not in notes:
        notes.append(text)
    return notes.index(text) + 1


def cell(summary: dict | None, peer: Peer, notes: list[str]) -> str:
    if peer.missing:
        return peer.missing
    if summary is None:
        return "—"
    if "error" in summary:
        return f"error [{note(notes, f'{peer.name}: {summary["error"]}')}]"
    if len(summary["values"]) == 1:
        return fmt(summary["min"])
    return f"{fmt(summary['min'])} / {fmt(summary['median'])}"


def table(rows: list[dict], pipeline: list[dict], peers: list[Peer]) -> tuple[str, list[str]]:
    """The markdown table and its numbered error notes."""
    names = [p.name for p in peers]
    head = ["row", *(f"{n} (min / median)" for n in names), "flowjit/jax.jit (medians)"]
    head += ["goal", "losses agree"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * len(names) + "|---|---|---|"]
    notes: list[str] = []
    for row in rows:
        cells = [cell(row["peers"].get(p.name), p, notes) for p in peers]
        extra = [row["ratio_text"], row["goal"], row["losses"]["text"]]
        lines.append("| " + " | ".join([row["label"], *cells, *extra]) + " |")
    for row in pipeline:
        lines.append(pipeline_line(row, len(peers) - 1, notes))
    return "\n".join(lines), notes


def pipeline_line(row: dict, others: int, notes: list[str]) -> str:
    if "error" in row:
        first = f"error [{note(notes, f'flowjit pipeline: {row["error"]}')}]"
    else:
        first = f"{fmt(row['min'])} / {fmt(row['median'])}"
    growth = row.get("growth")
    grew = f"{growth[0]:.1f}x time for {growth[1]:.1f}x ops" if growth else ""
    return "| " + " | ".join([row["label"], first, *["—"] * others, grew, "", "n.a."]) + " |"


def versions(results: dict) -> dict[str, str]:
    found = {}
    for by_peer in results.values():
        for peer, rs in by_peer.items():
            found.update((peer, r["version"]) for r in rs if "version" in r)
    return found


def report(runner: Runner, peers: list[Peer], mode: str) -> dict:
    results = runner.results
    rows = [build_row(row, results, peers) for row in ROWS if row.workload in results]
    pipeline = pipeline_rows(results) if "pipeline" in results else []
    text, notes = table(rows, pipeline, peers)
    elapsed = time.perf_counter() - runner.started
    load = ", ".join(f"{x:.2f}" for x in runner.load_at_start)
    print(f"\n## flowjit benchmark suite ({mode}): {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"\nload average before the suite (1, 5, 15 min): {load}")
    print("\n" + "; ".join(f"{p}: {v}" for p, v in versions(results).items()) + "\n")
    print(text)
    for i, note in enumerate(notes, 1):
        print(f"\n[{i}] {note}")
    print(
        f"\nlosses compared over {workloads.CHECKED_STEPS} steps, rtol {workloads.LOSS_RTOL} "
        f"(GPT bf16 rows: {GPT_BF16_LOSS_RTOL})"
    )
    if runner.fsdp_checks:
        print(f"FSDP checks: {json.dumps(runner.fsdp_checks)}")
    print(f"suite took {elapsed:.0f} s")
    return {
        "rows": rows,
        "pipeline": pipeline,
        "elapsed_seconds": elapsed,
        "load_average_at_start": runner.load_at_start,
        "fsdp_checks": runner.fsdp_checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--json", help="write every raw figure to this file")
    parser.add_argument("--tf-python", help="TensorFlow's Python interpreter")
    parser.add_argument("--only", help="comma-separated workloads (e.g. mlp,compile_mlp)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per process")
    opts = parser.parse_args()
    mode = "quick" if opts.quick else "full"
    peers = make_peers(opts.tf_python)
    runner = Runner(opts.timeout)
    run_all(runner, peers, mode, set(opts.only.split(",")) if opts.only else None)
    summary = report(runner, peers, mode)
    if opts.json:
        write_json(opts.json, mode, peers, runner, summary)


def write_json(path: str, mode: str, peers: list[Peer], runner: Runner, summary: dict) -> None:
    data = {
        "mode": mode,
        "argv": sys.argv,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "settings": {
            "steps_rounds_warmup": QUICK if mode == "quick" else FULL,
            "compile_repeats": COMPILE_REPEATS[mode],
            "pipeline": PIPELINE[mode],
        },
        "peers": {p.name: {"argv": p.argv + p.extra, "missing": p.missing} for p in peers},
        "results": runner.results,
        **summary,
    }
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
