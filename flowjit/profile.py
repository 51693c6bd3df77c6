"""Profile a whole script: ``python -m flowjit.profile [--logdir DIR] [--top N] script.py
[args...]`` runs the script as ``python script.py args...`` would, inside ``fj.profile(DIR)``
(default: ``./flowjit-profile``), then prints each compiled function's top lines and writes
them to ``DIR/flowjit-profile.md``; ``DIR`` also holds the XProf trace for TensorBoard.
(``FLOWJIT_PROFILE=DIR python script.py`` does the same without the printout.)"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import types

from flowjit.compiler.profiling import profile


class _Callable(types.ModuleType):
    """(``import flowjit.profile`` makes ``flowjit.profile`` this module: calling it still
    starts a profile, as ``fj.profile(logdir)`` does.)"""

    def __call__(self, logdir: str | os.PathLike) -> object:
        return profile(logdir)


sys.modules[__name__].__class__ = _Callable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flowjit.profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--logdir", default="flowjit-profile", help="where the profile goes")
    parser.add_argument("--top", type=int, default=10, help="lines shown per function")
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    opts = parser.parse_args(argv)
    sys.argv = [opts.script, *opts.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(opts.script)))
    prof = profile(opts.logdir)
    with prof:
        try:
            runpy.run_path(opts.script, run_name="__main__")
        except SystemExit as done:
            if done.code not in (None, 0):
                raise
    print(prof.summary(opts.top))
    print(f"(written to {prof.write_summary(opts.top)}; the XProf trace is beside it)")


if __name__ == "__main__":
    main()
