"""The flowjit peer of the benchmark suite (suite.py): each workload of workloads.py written
the plain way a flowjit user writes it: ``fj.Variable`` weights, one ``@fj.compile`` step,
``fj.gradients`` + ``fj.optim.SGD`` / ``fj.optim.Adam``, ``fj.nn`` layers, ``fj.scan`` for
the LSTM. Prints one ``RESULT {json}`` line.

    python bench/suite/flowjit_peer.py WORKLOAD [--steps N] [--rounds R] [--warmup W]
    python bench/suite/flowjit_peer.py pipeline [--rounds R] [--sizes 1000,10000,100000]

``pipeline`` (flowjit only) times the pass pipeline fj.compile runs on generated graphs of
about the given op counts (tests/passes/test_scale.py's program) and reports, per size, the
ops before and after and the seconds of each round under "pipeline".
"""

from __future__ import annotations

import gc
import pathlib
import sys
import time

import jax
import peer_common
import workloads as W
from flowjit.ir import Graph
from flowjit.passes import count_ops, default_pipeline, run_pipeline
from flowjit.passes.pipeline import with_required

import flowjit as fj
import flowjit.numpy as fnp

# the scaling test's generated program, the one the pipeline rows time; examples/gpt.py
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "passes"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples"))
from test_scale import long_program  # noqa: E402

PEER = "flowjit"
VERSION = f"flowjit {fj.__version__} (jax {jax.__version__})"
PIPELINE_SIZES = (1_000, 10_000, 100_000)


# models --------------------------------------------------------------------------------


def mlp_loss(params, x, y):
    h = x
    for i in range(0, len(params) - 2, 2):
        h = fj.nn.relu(h @ params[i] + params[i + 1])
    return fj.nn.softmax_cross_entropy(h @ params[-2] + params[-1], y).mean()


def cnn_loss(params, x, y):
    k1, c1, k2, c2, w, b = params
    h = fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(x, k1) + c1))
    h = fj.nn.max_pool2d(fj.nn.relu(fj.nn.conv2d(h, k2) + c2))
    return fj.nn.softmax_cross_entropy(h.reshape(h.shape[0], -1) @ w + b, y).mean()


def lstm_cell(p, carry, x):
    h, c = carry
    i, f, g, o = fnp.split(x @ p["w_x"] + h @ p["w_h"] + p["b"], 4, axis=-1)
    c = fj.nn.sigmoid(f) * c + fj.nn.sigmoid(i) * fnp.tanh(g)
    h = fj.nn.sigmoid(o) * fnp.tanh(c)
    return (h, c), h


def lstm_loss(p, tokens):
    inputs, targets = tokens[:, :-1].T, tokens[:, 1:].T  # time-major
    h0 = fnp.zeros((tokens.shape[0], W.LSTM_HIDDEN), fnp.float32)
    _, hs = fj.scan(lambda carry, x: lstm_cell(p, carry, x), (h0, h0), p["embed"][inputs])
    return fj.nn.softmax_cross_entropy(hs @ p["w_out"] + p["b_out"], targets).mean()


def compiled_step(loss_fn, params, variables, optimizer) -> peer_common.Step:
    # the optimizer's state made now, as the jax peer runs tx.init before its first call
    optimizer.state(variables)

    @fj.compile
    def step(*batch):
        loss = loss_fn(params, *batch)
        optimizer.apply(fj.gradients(loss, variables), variables)
        return loss

    return step


def gpt_step(model: str) -> peer_common.Step:
    """examples/gpt.py's model and training step, from flax's initial weights (gpt_flax.py:
    the jax.jit peer's), loaded by path."""
    import gpt
    import gpt_flax

    opts = W.gpt_options(model)
    net, initial = gpt.GPT(opts), gpt_flax.initial_params(opts)
    for path, variable in net.named_variables().items():
        variable.assign(gpt_flax.at_path(initial, path))
    opt = fj.optim.Optimizer(W.gpt_tx())
    train_step, _ = gpt.make_steps(net, opt)
    # the optimizer's state made now, as the jax peer runs tx.init before its first call
    opt.state({p: v for p, v in net.named_variables().items() if v.trainable})
    return train_step


def adam_loss(params, x):
    return sum(((p - x) ** 2).mean() for p in params)


def make_step(model: str) -> peer_common.Step:
    if model.startswith("gpt_"):
        return gpt_step(model)
    if model.startswith("adam_"):
        variables = [fj.Variable(p) for p in W.adam_params(W.adam_count(model))]
        return compiled_step(adam_loss, variables, variables, fj.optim.Adam(W.ADAM_LR))
    if model in ("mlp", "cnn"):
        init, loss_fn, lr = {
            "mlp": (W.mlp_params, mlp_loss, W.MLP_LR),
            "cnn": (W.cnn_params, cnn_loss, W.CNN_LR),
        }[model]
        variables = [fj.Variable(p) for p in init()]
        return compiled_step(loss_fn, variables, variables, fj.optim.SGD(lr))
    params = {k: fj.Variable(v, name=k) for k, v in W.lstm_params().items()}
    optimizer = fj.optim.Adam(W.ADAM_LR, W.ADAM_B1, W.ADAM_B2, W.ADAM_EPS)
    return compiled_step(lstm_loss, params, list(params.values()), optimizer)


# pass pipeline -------------------------------------------------------------------------


def time_pipeline(graph: Graph, rounds: int) -> tuple[list[float], int]:
    """Seconds of each of ``rounds`` runs of the passes fj.compile runs (verifying as it
    does by default), and the ops left."""
    seconds, ops_after = [], 0
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        out = run_pipeline(
            graph, with_required(default_pipeline()), verify_each=fj.config.verify_passes
        )
        seconds.append(time.perf_counter() - start)
        ops_after = count_ops(out.graph)
    return seconds, ops_after


def run_pipeline_sizes(opts) -> None:
    sizes = [int(s) for s in opts.sizes.split(",")] if opts.sizes else PIPELINE_SIZES
    rows = []
    for n in sizes:
        graph = long_program(n)
        seconds, ops_after = time_pipeline(graph, opts.rounds)
        rows.append({"ops": count_ops(graph), "ops_after": ops_after, "round_seconds": seconds})
    peer_common.emit(PEER, "pipeline", VERSION, pipeline=rows)


def main() -> None:
    parser = peer_common.arg_parser(__doc__, (*peer_common.WORKLOADS, "pipeline"))
    parser.add_argument("--sizes", help="pipeline: graph sizes in ops, comma-separated")
    opts = parser.parse_args()
    if opts.workload == "pipeline":
        run_pipeline_sizes(opts)
    elif opts.workload == "dispatch":
        peer_common.run_dispatch(PEER, VERSION, opts, fj.compile(lambda x: x + 1))
    else:
        peer_common.run_training(PEER, VERSION, opts, make_step)


if __name__ == "__main__":
    main()
