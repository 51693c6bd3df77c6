"""The dump viewer (python -m flowjit.view): one page with every compilation, every pass
with its diff, the graph as SVG and the cluster files; the built-in layout; and the page in
headless Chromium (no console error, every pass shown, a screenshot)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from html.parser import HTMLParser

import numpy as np
import pytest

import flowjit as fj
import flowjit.numpy as fnp
from flowjit.ir import parse
from flowjit.view import layout_svg

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_COPY = pathlib.Path("/tmp/flowjit-viewer.png")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """A dump of two small compilations and its page, built by ``python -m flowjit.view``."""
    dump = tmp_path_factory.mktemp("dumps")
    fj.config.update("dump_dir", str(dump))
    try:

        @fj.compile
        def scaled_tanh(x):
            return (fnp.tanh(x) * 1.0).sum()  # simplify drops x * 1, then dce the 1

        @fj.compile
        def printed_double(x):
            fj.print("sum {}", x.sum())  # the host call splits off a cluster
            return x * 2.0

        scaled_tanh(np.ones((4, 3), np.float32))
        printed_double(np.ones(3, np.float32))
    finally:
        fj.config.update("dump_dir", None)
    page = dump / "viewer.html"
    run = subprocess.run(
        [sys.executable, "-m", "flowjit.view", str(dump), "-o", str(page)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"wrote {page}" in run.stdout
    return dump, page


def _expected_passes(dump: pathlib.Path) -> list[list[str]]:
    """Per dump folder, in order: the traced IR, then every pass that summary.json lists."""
    summaries = [json.loads(p.read_text()) for p in sorted(dump.glob("*/summary.json"))]
    return [["traced"] + [p["name"] for p in s["passes"]] for s in summaries]


class _Outline(HTMLParser):
    """The page's compilations and the passes, diff lines and drawings in each."""

    def __init__(self) -> None:
        super().__init__()
        self.compilations: list[dict] = []
        self.tags: list[str] = []
        self._pass: str | None = None
        self._line: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self.tags.append(tag)
        if tag == "details" and "compilation" in classes:
            self.compilations.append({"passes": [], "diff": {}, "svgs": 0})
        elif tag == "details" and "pass" in classes:
            self._pass = attrs["data-pass"]
            self.compilations[-1]["passes"].append(self._pass)
        elif tag == "span" and classes and classes[0] in ("add", "del"):
            self._line = classes[0]
        elif tag == "svg" and self.compilations:
            self.compilations[-1]["svgs"] += 1

    def handle_data(self, data: str) -> None:
        if self._line:
            diff = self.compilations[-1]["diff"].setdefault(self._pass, [])
            diff.append((self._line, data))
            self._line = None


def test_the_page_shows_every_compilation_pass_diff_graph_and_cluster(report):
    dump, page = report
    text = page.read_text()
    outline = _Outline()
    outline.feed(text)
    scaled, printed = outline.compilations
    assert [c["passes"] for c in outline.compilations] == _expected_passes(dump)
    # the diffs, as the algebra says: simplify drops "x * 1", dce the unused constant 1
    simplify = scaled["diff"]["simplify"]
    assert [kind for kind, line in simplify if "= mul(%1, %2)" in line] == ["del"]
    assert not any("mul(" in line for kind, line in simplify if kind == "add")
    assert [kind for kind, line in scaled["diff"]["dce"] if "constant()" in line] == ["del"]
    assert any("cluster(%0)" in line for kind, line in printed["diff"]["partition"])
    # the graph: Graphviz draws one picture; the built-in layout one more for the cluster body
    assert scaled["svgs"] == 1 and printed["svgs"] == (1 if shutil.which("dot") else 2)
    for name in ("cluster-0.stablehlo.mlir", "cluster-0.hlo.txt"):
        assert text.count(f">{name}<") == 2  # one cluster in each compilation
    assert "func.func" in text and "HloModule" in text
    # self-contained: nothing to load, nothing to run
    assert "script" not in outline.tags and "img" not in outline.tags
    assert not re.search(r"(src|href)=\"(https?:|//)", text)


def test_the_builtin_layout_layers_ops_below_their_inputs():
    graph = parse(
        """graph @chain(%0: f32[2]) {
          %1: f32[] = constant() {value=dense(f32[], [2.0])}
          %2: f32[2] = tanh(%0)
          %3: f32[2] = mul(%2, %1)
          return %3
        }"""
    )
    svg = layout_svg(graph)
    tops = [float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)"', svg)]
    # boxes in program order: input, constant, tanh, mul, return
    assert len(tops) == 5
    input_, constant, tanh, mul, return_ = tops
    assert input_ < tanh < mul < return_
    assert constant == tanh  # a constant sits just above its user, not among the inputs
    # edges: input -> tanh, tanh -> mul, constant -> mul, mul -> return
    assert svg.count('<path d="M') == 4
    assert ">tanh</text>" in svg and ">f32[2]</text>" in svg


class _Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (its fds 3 and 4)."""

    def __init__(self, profile: pathlib.Path) -> None:
        to_browser, self._send = os.pipe()
        self._receive, from_browser = os.pipe()
        # copies above fd 4 first, so that moving one end to 3 or 4 cannot close the other
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        profile.mkdir()
        self.log = profile / "chromium.log"
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
        args += [f"--user-data-dir={profile}", "--no-first-run", "--hide-scrollbars"]
        # posix_spawn rather than subprocess with a preexec_fn: no fork of this
        # multithreaded (jax) process
        self.pid = os.posix_spawn(
            CHROMIUM,
            [CHROMIUM, *args],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(self.log), os.O_WRONLY | os.O_CREAT, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
                (os.POSIX_SPAWN_DUP2, ends[0], 3),
                (os.POSIX_SPAWN_DUP2, ends[1], 4),
            ],
        )
        for fd in (to_browser, from_browser, *ends):
            os.close(fd)
        self.messages: list[dict] = []
        self._buffer, self._next_id, self.session = b"", 0, None

    def send(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        reply = self.wait(lambda m, n=self._next_id: m.get("id") == n)
        assert "error" not in reply, reply
        return reply["result"]

    def wait(self, match, since: int = 0, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages[since:]:
                if match(message):
                    return message
            since = len(self.messages)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._receive], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer in time; its log: {self.log}")
            chunk = os.read(self._receive, 1 << 20)
            assert chunk, f"Chromium closed the DevTools pipe; its log: {self.log}"
            *complete, self._buffer = (self._buffer + chunk).split(b"\0")
            self.messages += [json.loads(raw) for raw in complete]

    def open_page(self, width: int, height: int) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def load(self, url: str) -> list[str]:
        """Navigate and wait for the load event; return the page's console errors,
        uncaught exceptions and error log entries (failed loads, ...)."""
        start = len(self.messages)
        self.send("Page.navigate", url=url)
        self.wait(lambda m: m.get("method") == "Page.loadEventFired", since=start)
        self.send("Runtime.evaluate", expression="1")  # a round trip: earlier events are in
        errors = []
        for message in self.messages[start:]:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description", details["text"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
        return errors

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"][
            "value"
        ]

    def close(self) -> None:
        """Ask the browser to quit; kill it if it has not within 15 s."""
        try:
            self.session = None
            os.write(self._send, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass  # it is gone already
        deadline = time.monotonic() + 15
        while os.waitpid(self.pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self._send)
        os.close(self._receive)


# Per compilation, the passes whose heading the reader can see (rendered, with a size).
_SHOWN_PASSES = """
Array.from(document.querySelectorAll("details.compilation")).map(c =>
  Array.from(c.querySelectorAll("details.pass")).filter(d => {
    const box = d.querySelector("summary").getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  }).map(d => d.dataset.pass))
"""


def test_the_page_in_headless_chromium_loads_cleanly_and_shows_every_pass(report, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: .ci/run installs it (Debian package "
            "chromium; by hand: apt-get install -y chromium)"
        )
    dump, page = report
    browser = _Chromium(tmp_path / "profile")
    try:
        browser.open_page(1280, 2000)
        # the error capture works: a page with a console error and an uncaught exception
        script = "<script>console.error('probe'); no_such()</script>"
        probe = browser.load("data:text/html," + urllib.parse.quote(script))
        assert any("probe" in e for e in probe) and any("no_such" in e for e in probe), probe
        assert browser.load(page.as_uri()) == []
        assert browser.evaluate(_SHOWN_PASSES) == _expected_passes(dump)
        assert browser.evaluate("document.querySelectorAll('svg rect, svg polygon').length") > 0
        png = browser.send("Page.captureScreenshot", format="png")["data"]
    finally:
        browser.close()
    screenshot = tmp_path / "viewer.png"
    screenshot.write_bytes(base64.b64decode(png))
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"viewer screenshot: {screenshot} (copied to {SCREENSHOT_COPY})")
