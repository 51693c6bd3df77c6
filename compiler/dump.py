"""IR dump folders (API.md section 10): with ``FLOWJIT_DUMP_DIR`` (or
``fj.config.update("dump_dir", d)``) set, every compilation writes a folder
``<seq>-<function>-<signature hash>/`` holding the traced IR (``00-traced.fjir``), the IR
after each pass that changed it (``NN-<pass>.fjir``, with a header naming the pass, its time
and the op counts; every ``.fjir`` parses back with ``fj.ir.parse``), ``graph.dot``, each
cluster's StableHLO and XLA-optimized HLO, and ``summary.json``.

Dumping never breaks the user's program: a folder that cannot be written gives one warning.

The dump root may be shared (``/tmp/dumps``) and its folder names are predictable, so nothing
there is reused or followed: each compilation makes a fresh folder (a name already taken, by a
folder, a file or a link someone planted, moves on to the next number, so two processes
dumping the same function never write into one folder), opens it without following a link,
and creates each file in it exclusively, never through a link."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
from typing import Any

from flowjit.backends.xla import Cluster, cluster_stablehlo
from flowjit.backends.xla.jaxshim import jax
from flowjit.ir import Graph, print_graph
from flowjit.ir.dot import to_dot
from flowjit.ir.ops import host as H

from .lowered import optimized_hlo

logger = logging.getLogger("flowjit")
_sequence = itertools.count()
_warned: set[str] = set()


def dump_compilation(root: str, name: str, signature: Any, traced: Graph, pipeline: Any) -> None:
    """Write the dump folder of one compilation under ``root`` (warn once if it cannot)."""
    try:
        folder = _write(root, name, signature, traced, pipeline)
        logger.info("dumped %s to %s", name, folder)
    except OSError as err:
        if root not in _warned:
            _warned.add(root)
            logger.warning("cannot write IR dumps to %s (%s); the program runs on", root, err)


def pass_file_name(number: int, pass_name: str) -> str:
    """The file of the IR after the ``number``-th pass that changed the graph: ``NN-<pass>.fjir``,
    one file name whatever the pass is called (the viewer finds it by the same rule)."""
    return f"{number:02d}-{_file_safe(pass_name)}.fjir"


def write_new_file(path: str, text: str, *, dir_fd: int | None = None) -> None:
    """Create ``path`` (relative to ``dir_fd`` if given) and write ``text`` to it, failing
    (FileExistsError, or ELOOP for a link) rather than writing to anything that is there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(path, flags, 0o644, dir_fd=dir_fd), "w", encoding="utf-8") as f:
        f.write(text)


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", text)


def _new_folder(root: str, stem: str) -> tuple[str, int]:
    """A folder ``<seq>-<stem>`` under ``root`` that this call made, and a descriptor of it
    (to create the files through: a link swapped in for the folder later is not followed)."""
    os.makedirs(root, exist_ok=True)
    while True:
        folder = os.path.join(root, f"{next(_sequence):03d}-{stem}")
        try:
            os.mkdir(folder)
        except FileExistsError:  # an earlier run's folder, another process's, or a planted link
            continue
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        return folder, os.open(folder, flags)


def _write(root: str, name: str, signature: Any, traced: Graph, pipeline: Any) -> str:
    digest = hashlib.sha256(repr(signature.key).encode()).hexdigest()[:8]
    files = {"00-traced.fjir": "# traced, before any pass\n" + print_graph(traced)}
    changed = [r for r in pipeline.records if r.changed]
    for number, record in enumerate(changed, start=1):
        header = (
            f"# after pass {record.name} ({record.seconds * 1e3:.2f} ms): "
            f"{record.ops_before} -> {record.ops_after} ops\n"
        )
        files[pass_file_name(number, record.name)] = header + record.text
    graph = pipeline.graph
    files["graph.dot"] = to_dot(graph)
    clusters = [op.attrs["body"] for op in graph.ops if op.opdef is H.cluster] or [graph]
    for k, body in enumerate(clusters):
        files[f"cluster-{k}.stablehlo.mlir"] = _or_reason(lambda: cluster_stablehlo(body))
        files[f"cluster-{k}.hlo.txt"] = _or_reason(lambda: _optimized_hlo(body))
    summary = {
        "function": name,
        "signature": [f"{p}: {t}" for p, t in zip(signature.paths, signature.types)],
        "statics": [f"{p}={v!r}" for p, v in signature.statics],
        "passes": [
            {
                "name": r.name,
                "seconds": r.seconds,
                "changed": r.changed,
                "ops_before": r.ops_before,
                "ops_after": r.ops_after,
            }
            for r in pipeline.records
        ],
        "clusters": len(clusters),
        "files": sorted([*files, "summary.json"]),
    }
    files["summary.json"] = json.dumps(summary, indent=2) + "\n"
    folder, folder_fd = _new_folder(root, f"{_file_safe(name)}-{digest}")
    try:
        for filename, text in files.items():
            write_new_file(filename, text, dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    return folder


def _optimized_hlo(body: Graph) -> str:
    """The cluster compiled by XLA on its own, with the compile options a step gets: the HLO
    after XLA's passes, naming this program's lines (``optimized_hlo``)."""
    cluster = Cluster(body)
    avals = [jax.ShapeDtypeStruct(v.type.shape, v.type.dtype) for v in body.inputs]
    return optimized_hlo(cluster.jitted(None, False).lower(*avals), cluster.options(None))


def _or_reason(make) -> str:
    try:
        return make()
    except Exception as err:  # (a host callback in a loop compiles only within its step)
        return f"// not available on its own: {type(err).__name__}: {err}\n"
