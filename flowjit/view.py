"""The dump viewer: ``python -m flowjit.view DUMP_DIR [-o report.html]`` turns the IR dump
folders under DUMP_DIR (compiler/dump.py) into one HTML page. For each compilation it shows
the signature, a table of pass timings and op counts, the traced IR and each pass's IR with
a diff against the IR before it, the final graph drawn as SVG (Graphviz ``dot -Tsvg`` when
``dot`` is installed, else a built-in layered layout), and each cluster's StableHLO and
XLA-optimized HLO.

The page is self-contained: inline styles and drawings, no scripts, nothing it loads. Every
text taken from the dump is escaped.

A dump may come from anyone (a shared ``/tmp/dumps``), so the viewer reads nothing outside its
folders: each file is opened by a name the viewer makes (a pass's name from summary.json goes
through ``pass_file_name``, so ``x/../../secret`` stays one name in the folder), relative to
the folder opened without following links, and only if it is a regular file, not a link
(the dump writes none, so even one pointing inside is refused); a folder that is a link is
refused too. What is refused is named on the page and logged as a warning. The page itself
is written to a new file renamed onto ``report.html``, so a link planted there is replaced,
not written through."""

from __future__ import annotations

import argparse
import difflib
import errno
import html
import json
import logging
import os
import pathlib
import re
import secrets
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field

from flowjit.compiler.dump import pass_file_name, write_new_file
from flowjit.ir import Graph, ParseError, parse

logger = logging.getLogger("flowjit")

_CLUSTER_FILE = re.compile(r"^cluster-(\d+)\.(stablehlo\.mlir|hlo\.txt)$")

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
h1 small, .muted { color: #656d76; font-weight: normal; }
pre { font: 12px/1.35 monospace; background: #f6f8fa; padding: .6em; overflow: auto;
      margin: .3em 0; }
details { margin: .3em 0; }
details > summary { cursor: pointer; }
details.compilation { border: 1px solid #d0d7de; border-radius: 6px; padding: .5em 1em;
                      margin: 1em 0; }
details.compilation > summary { font-size: 1.25em; font-weight: 600; }
details.pass { border-left: 3px solid #d0d7de; padding-left: .6em; }
details.pass.changed { border-left-color: #0969da; }
.diff span { display: block; white-space: pre; }
.diff .add { background: #dafbe1; } .diff .del { background: #ffebe9; }
.diff .hunk { background: #ddf4ff; color: #0550ae; } .diff .file { color: #656d76; }
.plus { color: #1a7f37; } .minus { color: #cf222e; }
table { border-collapse: collapse; margin: .4em 0; }
td, th { border: 1px solid #d0d7de; padding: .2em .6em; text-align: right; }
td:nth-child(2), th:nth-child(2) { text-align: left; font-family: monospace; }
.bar { background: #0969da; height: .7em; min-width: 1px; }
td.barcell { width: 12em; text-align: left; }
.graph { overflow: auto; border: 1px solid #d0d7de; background: #fff; margin: .4em 0;
         width: fit-content; max-width: 100%; }
"""

# One arrowhead for every built-in drawing (SVGs in one page share their ids).
_ARROW = (
    '<svg width="0" height="0" style="position:absolute"><defs><marker id="fj-arrow" '
    'viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
    'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker></defs></svg>'
)


def find_compilations(root: pathlib.Path) -> list[pathlib.Path]:
    """The dump folders under ``root`` (or ``root`` itself, if it is one), in order. A folder
    that is a link is listed, to be refused when it is read."""
    root = root.resolve()  # the folder the user named, wherever it is
    if os.path.lexists(root / "summary.json"):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if os.path.lexists(p / "summary.json"))


def render_report(root: pathlib.Path) -> str:
    """The HTML page for every compilation dumped under ``root``."""
    folders = find_compilations(root)
    drawer = "Graphviz dot" if shutil.which("dot") else "the built-in layout"
    toc = "".join(f'<li><a href="#{_anchor(f)}">{html.escape(f.name)}</a></li>' for f in folders)
    body = "".join(_compilation(folder) for folder in folders)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>flowjit dumps: {html.escape(str(root))}</title>"
        f'<link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>{_ARROW}'
        f"<h1>flowjit dumps <small>{html.escape(str(root))}</small></h1>"
        f'<p class="muted">{len(folders)} compilation(s); graphs drawn with {drawer}.</p>'
        f"<ul>{toc}</ul>{body}</body></html>\n"
    )


def _text(value: object) -> str:
    """Any value from the dump, as HTML text."""
    return html.escape(str(value))


def _anchor(folder: pathlib.Path) -> str:
    return "c-" + re.sub(r"[^A-Za-z0-9_-]", "_", folder.name)


class _Folder:
    """A dump folder opened without following a link; ``read`` opens files relative to it."""

    def __init__(self, path: pathlib.Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def read(self, name: str) -> str:
        """The text of the regular file ``name`` (one name, made by the viewer) in the folder.
        Raises OSError for a link (ELOOP, wherever it points), a missing file, or anything
        that is not a regular file (a FIFO would block: it is opened non-blocking)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with open(os.open(name, flags, dir_fd=self.fd), encoding="utf-8", errors="replace") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            return f.read()

    def refused(self, name: str, err: OSError) -> str:
        return _refusal(self.path / name, _why(err))


def _why(err: OSError) -> str:
    return "a link, not followed" if err.errno == errno.ELOOP else err.strerror or str(err)


def _refusal(path: pathlib.Path, why: str) -> str:
    """Log why ``path`` is not shown, and say it on the page."""
    logger.warning("flowjit.view: %s not shown: %s", path, why)
    return f'<p class="refused">{html.escape(path.name)} not shown: {html.escape(why)}.</p>'


def _compilation(path: pathlib.Path) -> str:
    """One compilation's section, or one saying why its folder or summary.json is not shown
    (a link, not a folder, or a summary.json without the fields the dump writes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:  # a link gives ENOTDIR (O_DIRECTORY wins over O_NOFOLLOW)
        why = "a link, not followed" if path.is_symlink() else _why(err)
        return _refused_section(path, _refusal(path, why))
    folder = _Folder(path, fd)
    try:
        try:
            summary = _summary(folder.read("summary.json"))
        except OSError as err:
            return _refused_section(path, folder.refused("summary.json", err))
        except ValueError as err:
            return _refused_section(path, _refusal(path / "summary.json", str(err)))
        return _compilation_section(folder, summary)
    finally:
        os.close(fd)


def _refused_section(path: pathlib.Path, message: str) -> str:
    return (
        f'<details class="compilation refused" id="{_anchor(path)}" open>'
        f"<summary>{html.escape(path.name)}</summary>{message}</details>"
    )


# The fields of summary.json the page uses, with their types as the dump writes them.
_SUMMARY_FIELDS = {
    "function": str,
    "signature": list,
    "statics": list,
    "passes": list,
    "clusters": object,
}
_PASS_FIELDS = {
    "name": str,
    "seconds": (int, float),
    "changed": bool,
    "ops_before": object,
    "ops_after": object,
}


def _summary(text: str) -> dict:
    """summary.json, checked to hold the fields the page uses (ValueError says which not)."""
    summary = json.loads(text)
    _check_fields(summary, _SUMMARY_FIELDS, "")
    for k, p in enumerate(summary["passes"]):
        _check_fields(p, _PASS_FIELDS, f"passes[{k}].")
    return summary


def _check_fields(record: object, fields: dict[str, type | tuple], where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where.rstrip('.') or 'the file'} is not a JSON object")
    for key, kind in fields.items():
        if key not in record or not isinstance(record[key], kind):
            raise ValueError(f"{where}{key} is missing or not what the dump writes")


def _compilation_section(folder: _Folder, summary: dict) -> str:
    passes = summary["passes"]
    signature = ", ".join(map(str, summary["signature"] + summary["statics"]))
    total_ms = sum(p["seconds"] for p in passes) * 1e3
    title = f"{folder.path.name}: {summary['function']}({signature})"
    facts = f"{len(passes)} passes in {total_ms:.2f} ms, {_text(summary['clusters'])} cluster(s)"
    steps, final_ir = _passes(folder, passes)
    return (
        f'<details class="compilation" id="{_anchor(folder.path)}" open>'
        f'<summary>{html.escape(title)} <span class="muted">{facts}</span></summary>'
        f"<h3>Timings</h3>{_timings(passes)}"
        f"<h3>Passes</h3>{steps}"
        f"<h3>Graph after the passes</h3>{_graph_section(folder, final_ir)}"
        f"<h3>Clusters</h3>{_clusters(folder)}</details>"
    )


def _timings(passes: list[dict]) -> str:
    longest = max((p["seconds"] for p in passes), default=0.0) or 1.0
    rows = []
    for number, p in enumerate(passes, start=1):
        width = 100 * p["seconds"] / longest
        rows.append(
            f"<tr><td>{number}</td><td>{html.escape(p['name'])}</td>"
            f"<td>{p['seconds'] * 1e3:.3f}</td>"
            f'<td class="barcell"><div class="bar" style="width:{width:.1f}%"></div></td>'
            f"<td>{'yes' if p['changed'] else 'no'}</td>"
            f"<td>{_text(p['ops_before'])}</td><td>{_text(p['ops_after'])}</td></tr>"
        )
    total = sum(p["seconds"] for p in passes) * 1e3
    return (
        "<table><tr><th>#</th><th>pass</th><th>ms</th><th></th><th>changed</th>"
        f"<th>ops before</th><th>ops after</th></tr>{''.join(rows)}"
        f"<tr><td></td><td>total</td><td>{total:.3f}</td><td></td><td></td><td></td><td></td>"
        "</tr></table>"
    )


def _ir_text(text: str) -> str:
    """The IR of a ``.fjir`` file without its header comments (what the diffs compare)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")) + "\n"


def _passes(folder: _Folder, passes: list[dict]) -> tuple[str, str]:
    """One section per pass in summary.json (the traced IR first), and the final IR text.

    The dump writes the IR after each pass that changed it as ``NN-<pass>.fjir``
    (``pass_file_name``), numbered from 01 in pipeline order; a pass that changed nothing has
    no file. A file not shown leaves the IR before it to compare the next one with."""
    previous_name = "00-traced.fjir"
    try:
        previous = _ir_text(folder.read(previous_name))
        shown = f"<pre>{html.escape(previous)}</pre>"
    except OSError as err:
        previous, shown = "", folder.refused(previous_name, err)
    sections = [
        (
            '<details class="pass" data-pass="traced"><summary>00 traced '
            f'<span class="muted">(the IR before any pass)</span></summary>{shown}</details>'
        )
    ]
    numbers = iter(range(1, len(passes) + 1))
    for p in passes:
        name, timing = html.escape(p["name"]), f"{p['seconds'] * 1e3:.3f} ms"
        counts = f"{_text(p['ops_before'])} &rarr; {_text(p['ops_after'])} ops"
        if not p["changed"]:
            sections.append(
                f'<details class="pass" data-pass="{name}"><summary>{name} '
                f'<span class="muted">{timing}, unchanged</span></summary>'
                "<p>No change: the IR is the one above.</p></details>"
            )
            continue
        filename = pass_file_name(next(numbers), p["name"])
        try:
            after = _ir_text(folder.read(filename))
        except OSError as err:
            sections.append(
                f'<details class="pass changed" data-pass="{name}" open><summary>'
                f'{name} <span class="muted">{timing}, {counts}</span></summary>'
                f"{folder.refused(filename, err)}</details>"
            )
            continue
        diff, added, removed = _diff(previous, after, previous_name, filename)
        sections.append(
            f'<details class="pass changed" data-pass="{name}" open><summary>'
            f'{html.escape(filename.removesuffix(".fjir"))} '
            f'<span class="muted">{timing}, {counts},</span> '
            f'<span class="plus">+{added}</span> <span class="minus">&minus;{removed}</span> '
            f'lines</summary><pre class="diff">{diff}</pre>'
            f"<details><summary>IR after {name}</summary><pre>{html.escape(after)}</pre>"
            "</details></details>"
        )
        previous_name, previous = filename, after
    return "".join(sections), previous


def _diff(before: str, after: str, before_name: str, after_name: str) -> tuple[str, int, int]:
    """A unified diff as colored HTML lines, with the counts of added and removed lines."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), before_name, after_name, lineterm=""
    )
    out, added, removed = [], 0, 0
    for line in lines:
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind, added = "add", added + 1
        elif line.startswith("-"):
            kind, removed = "del", removed + 1
        else:
            kind = "ctx"
        out.append(f'<span class="{kind}">{html.escape(line)}</span>')
    return "".join(out), added, removed


def _graph_section(folder: _Folder, final_ir: str) -> str:
    """The final graph as SVG: Graphviz renders graph.dot (handed to ``dot`` as text, not as a
    path it would open) where ``dot`` is installed and succeeds; otherwise the built-in layout
    draws the final IR, one drawing per subgraph."""
    dot, refused = shutil.which("dot"), ""
    if dot:
        try:
            source = folder.read("graph.dot")
        except OSError as err:
            refused = folder.refused("graph.dot", err)
        else:
            run = subprocess.run(
                [dot, "-Tsvg"],
                input=source,
                check=False,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if run.returncode == 0 and "<svg" in run.stdout:
                return f'<div class="graph graphviz">{run.stdout[run.stdout.index("<svg") :]}</div>'
    try:
        graph = parse(final_ir)
    except ParseError as err:
        return (
            f"{refused}<p>The final IR does not parse, so it is not drawn: "
            f"{html.escape(str(err))}</p>"
        )
    return refused + "".join(
        f'<p class="muted">{html.escape(title)}</p><div class="graph builtin">{svg}</div>'
        for title, svg in _drawings(graph, f"graph @{graph.name}")
    )


def _drawings(graph: Graph, title: str) -> list[tuple[str, str]]:
    """The graph's drawing, then those of its subgraphs (loop bodies, branches, clusters)."""
    out = [(title, layout_svg(graph))]
    for index, op in enumerate(graph.ops):
        for key in op.opdef.graph_attrs:
            inner = op.attrs[key]
            where = f"{title} / op {index} {op.opdef.name} {key} (graph @{inner.name})"
            out += _drawings(inner, where)
    return out


# The built-in layout's measures, in pixels (12px monospace is about 7.2px a character).
_CHAR_W, _LINE_H, _PAD, _GAP_X, _GAP_Y, _MARGIN, _MAX_CHARS = 7.2, 15, 6, 22, 44, 10, 60


@dataclass
class _Node:
    lines: list[str]
    kind: str  # "input", "op", "nested" (an op with subgraphs) or "return"
    preds: list[int]
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    width: float = field(init=False)
    height: float = field(init=False)

    def __post_init__(self) -> None:
        longest = max(len(_clip(line)) for line in self.lines)
        self.width = longest * _CHAR_W + 2 * _PAD
        self.height = len(self.lines) * _LINE_H + 2 * _PAD

    @property
    def center(self) -> float:
        return self.x + self.width / 2


def _clip(line: str) -> str:
    return line if len(line) <= _MAX_CHARS else line[: _MAX_CHARS - 1] + "\u2026"


def _graph_nodes(graph: Graph) -> list[_Node]:
    """Inputs, ops and the return, in program order; ``preds`` name the producing nodes."""
    nodes: list[_Node] = []
    producer: dict[object, int] = {}
    for i, value in enumerate(graph.inputs):
        producer[value] = len(nodes)
        nodes.append(_Node([f"input {i}", str(value.type)], "input", []))
    for op in graph.ops:
        lines = [op.opdef.name]
        if op.outputs:
            lines.append(", ".join(str(v.type) for v in op.outputs))
        if op.device:
            lines.append(f"on {op.device}")
        if op.loc:
            lines.append(str(op.loc))
        preds = sorted({producer[v] for v in op.inputs if v in producer})
        producer.update(dict.fromkeys(op.outputs, len(nodes)))
        nodes.append(_Node(lines, "nested" if op.opdef.graph_attrs else "op", preds))
    returned = sorted({producer[v] for v in graph.outputs if v in producer})
    nodes.append(_Node(["return"], "return", returned))
    return nodes


def layout_svg(graph: Graph) -> str:
    """The built-in drawing of one graph (its subgraphs are drawn on their own).

    Layers by longest path from the inputs (a node sits one layer below its lowest
    producer), except that an op without inputs (a constant) sits just above its first
    user rather than among the graph inputs; within a layer nodes are ordered by the mean
    position of their producers and placed as near it as the nodes to their left allow.
    Edges are curves from the bottom of the producer to the top of the user."""
    nodes = _graph_nodes(graph)
    for node in nodes:  # producers come first in program order
        node.layer = 1 + max((nodes[p].layer for p in node.preds), default=-1)
    users: dict[int, list[int]] = {}
    for node in nodes:
        for p in node.preds:
            users.setdefault(p, []).append(node.layer)
    for index, node in enumerate(nodes):
        if node.kind != "input" and not node.preds and index in users:
            node.layer = min(users[index]) - 1
    layers: list[list[_Node]] = [[] for _ in range(max(n.layer for n in nodes) + 1)]
    for node in nodes:
        layers[node.layer].append(node)
    y = _MARGIN
    for row in layers:
        wanted = {id(n): sum(nodes[p].center for p in n.preds) / max(len(n.preds), 1) for n in row}
        row.sort(key=lambda n: wanted[id(n)])  # stable: layer 0 stays in program order
        right = _MARGIN - _GAP_X
        for node in row:
            node.x, node.y = max(wanted[id(node)] - node.width / 2, right + _GAP_X), y
            right = node.x + node.width
        y += max(n.height for n in row) + _GAP_Y
    width = max(n.x + n.width for n in nodes) + _MARGIN
    height = y - _GAP_Y + _MARGIN
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            'font-family="monospace" font-size="12">'
        )
    ]
    for node in nodes:
        for p in node.preds:
            src = nodes[p]
            x1, y1, x2, y2 = src.center, src.y + src.height, node.center, node.y
            bend = (y2 - y1) / 2
            parts.append(
                f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},'
                f'{y2 - bend:.1f} {x2:.1f},{y2:.1f}" fill="none" stroke="#57606a" '
                'marker-end="url(#fj-arrow)"/>'
            )
    fills = {"input": "#ddf4ff", "return": "#ddf4ff", "op": "#ffffff", "nested": "#fff8c5"}
    for node in nodes:
        rounded = 12 if node.kind in ("input", "return") else 3
        parts.append(
            f'<g class="node {node.kind}"><title>{html.escape(chr(10).join(node.lines))}</title>'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.width:.1f}" '
            f'height="{node.height:.1f}" rx="{rounded}" fill="{fills[node.kind]}" '
            'stroke="#57606a"/>'
        )
        for k, line in enumerate(node.lines):
            weight = ' font-weight="bold"' if k == 0 else ""
            baseline = node.y + _PAD + (k + 1) * _LINE_H - 3
            parts.append(
                f'<text x="{node.x + _PAD:.1f}" y="{baseline:.1f}"{weight}>'
                f"{html.escape(_clip(line))}</text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


# Each cluster's files, in the order they are made: flowjit's StableHLO, then XLA's HLO.
_CLUSTER_FILES = {
    "stablehlo.mlir": "StableHLO (as flowjit emitted it)",
    "hlo.txt": "HLO (XLA-optimized)",
}


def _clusters(folder: _Folder) -> str:
    names = set(os.listdir(folder.fd))
    sections = []
    for k in sorted({int(m.group(1)) for m in map(_CLUSTER_FILE.match, names) if m}):
        for suffix, title in _CLUSTER_FILES.items():
            name = f"cluster-{k}.{suffix}"
            if name not in names:
                continue
            try:
                shown = f"<pre>{html.escape(folder.read(name))}</pre>"
            except OSError as err:
                shown = folder.refused(name, err)
            sections.append(
                f"<details><summary>cluster {k}: {title} "
                f'<span class="muted">{html.escape(name)}</span></summary>{shown}</details>'
            )
    return "".join(sections) or "<p>No cluster files.</p>"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flowjit.view",
        description="Render flowjit IR dump folders (FLOWJIT_DUMP_DIR) as one HTML page.",
    )
    parser.add_argument("dump_dir", type=pathlib.Path, help="a dump folder, or the folder of them")
    parser.add_argument(
        "-o",
        "--output",
        type=pathlib.Path,
        help="where to write the page (default: DUMP_DIR/report.html)",
    )
    args = parser.parse_args(argv)
    if not find_compilations(args.dump_dir):
        parser.error(
            f"no dump folders (with a summary.json) under {args.dump_dir}; run your program "
            "with FLOWJIT_DUMP_DIR set to that folder first"
        )
    output = args.output or args.dump_dir / "report.html"
    try:
        _replace(output, render_report(args.dump_dir))
    except OSError as err:
        sys.exit(f"{parser.prog}: cannot write the page to {output}: {err}")
    print(f"wrote {output}")


def _replace(path: pathlib.Path, text: str) -> None:
    """Write ``path`` as a new file (under a random name beside it) renamed onto it: whatever
    is at ``path``, a link planted there included, is replaced, never written through."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write_new_file(str(temporary), text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    main()
