"""Every ```python block of README.md and docs/*.md runs, so the docs cannot drift from the code.

The blocks of one file run in order in one fresh process, each seeing what the earlier ones
defined, in a scratch folder, on a CPU that simulates 8 devices (for the mesh examples). A
python block directly followed by a block fenced ```output must print exactly that text.

A block opts out only when it cannot run on one machine (a TPU pod slice, several processes):
the line before its fence is ``<!-- doc-test: skip: <why> -->``, and the reason is required."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- doc-test: skip(?::\s*(.*?))?\s*-->\s*$")
SEPARATOR = "\x00doc-test block\x00"


@dataclass
class Block:
    line: int  # of the code's first line in the file
    code: str
    skip: str | None  # why it cannot run here; None: it runs
    output: str | None  # what it must print; None: not checked


def python_blocks(text: str) -> list[Block]:
    fences = list(FENCE.finditer(text))
    blocks = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "python":
            continue
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = SKIP.search(before)
        if marker is not None and not marker.group(1):
            raise ValueError(f"line {text.count(chr(10), 0, fence.start())}: a skip needs a reason")
        after = fences[i + 1] if i + 1 < len(fences) else None
        output = None
        if after is not None and after.group(1) == "output":
            if text[fence.end() : after.start()].strip() == "":
                output = after.group(2)
        line = text.count("\n", 0, fence.start()) + 2
        blocks.append(Block(line, fence.group(2), marker and marker.group(1), output))
    return blocks


RUNNER = f"""
import json, sys
blocks, name = json.load(open(sys.argv[1])), sys.argv[2]
namespace = {{"__name__": "__main__"}}
for block in blocks:
    print({SEPARATOR!r}, flush=True)
    exec(compile("\\n" * (block["line"] - 1) + block["code"], name, "exec"), namespace)
    if "jax" in sys.modules:  # (host prints land before the next block's separator)
        sys.modules["jax"].effects_barrier()
    sys.stdout.flush()
"""


def run_blocks(path: pathlib.Path, blocks: list[Block], folder: pathlib.Path) -> list[str]:
    """Run ``blocks`` in order in one process in ``folder``; what each printed."""
    spec = folder / "blocks.json"
    spec.write_text(json.dumps([{"line": b.line, "code": b.code} for b in blocks]))
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        FLOWJIT_CACHE_DIR="",
    )
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(spec), str(path.relative_to(ROOT))],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{path.name}: a block failed:\n{done.stderr[-4000:]}"
    return done.stdout.split(SEPARATOR + "\n")[1:]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_the_python_blocks_run_and_print_what_they_show(path, tmp_path):
    blocks = [b for b in python_blocks(path.read_text()) if b.skip is None]
    printed = run_blocks(path, blocks, tmp_path) if blocks else []
    assert len(printed) == len(blocks)
    for block, out in zip(blocks, printed):
        if block.output is not None:
            assert out == block.output, f"{path.name}:{block.line} printed:\n{out}"


def test_the_docs_have_python_blocks_and_few_opt_outs():
    blocks = {p.name: python_blocks(p.read_text()) for p in DOCS}
    assert len(blocks["README.md"]) >= 1 and len(blocks["user-guide.md"]) >= 5
    skipped = [(name, b.line, b.skip) for name, bs in blocks.items() for b in bs if b.skip]
    assert all(name == "tpu.md" for name, _, _ in skipped), skipped  # only multi-host blocks


def test_blocks_are_found_with_their_opt_outs_and_outputs():
    text = (
        "# t\n\n```python\nprint(1)\n```\n\n```output\n1\n```\n\n"
        "<!-- doc-test: skip: needs a pod slice -->\n```python\nboom()\n```\n"
        "```sh\nls\n```\n```python\nx = 2\n```\n"
    )
    assert python_blocks(text) == [
        Block(4, "print(1)\n", None, "1\n"),
        Block(13, "boom()\n", "needs a pod slice", None),
        Block(19, "x = 2\n", None, None),
    ]
    with pytest.raises(ValueError, match="a skip needs a reason"):
        python_blocks("<!-- doc-test: skip -->\n```python\nx = 1\n```\n")


def test_a_failing_block_fails_naming_its_file_and_line(tmp_path):
    path = ROOT / "docs" / "user-guide.md"  # (a name for the traceback; the blocks are ours)
    with pytest.raises(AssertionError, match=r'File "docs/user-guide.md", line 7'):
        run_blocks(path, [Block(6, "x = 1\nraise ValueError(x)\n", None, None)], tmp_path)


def test_the_debugging_walkthrough_counts_are_the_digits_steps(tmp_path):
    """docs/debugging.md's walkthrough quotes the digits MLP step's op counts, traced and
    after each pass: they are what a dump of that run says (a shell block, so not run above)."""
    text = (ROOT / "docs" / "debugging.md").read_text()
    walkthrough = text[text.index("## Walkthrough: the digits MLP") :]
    env = dict(os.environ, FLOWJIT_DUMP_DIR=str(tmp_path), FLOWJIT_CACHE_DIR="")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits_mlp.py"), "--epochs", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (summary,) = tmp_path.glob("*-train_step-*/summary.json")
    passes = json.loads(summary.read_text())["passes"]
    traced = re.search(
        r"`00-traced\.fjir` is the step as written: .*? (\d+) ops\.",
        walkthrough,
        re.S,
    )
    assert traced is not None and int(traced.group(1)) == passes[0]["ops_before"]
    for p in passes:
        if p["changed"]:
            quoted = re.search(rf"`{p['name']}`\s+(\d+) -> (\d+)", walkthrough)
            assert quoted is not None, f"the walkthrough does not quote {p['name']}"
            assert (int(quoted.group(1)), int(quoted.group(2))) == (
                p["ops_before"],
                p["ops_after"],
            ), p
