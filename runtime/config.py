"""flowjit's settings: ``fj.config.update(name, value)`` and ``fj.config.name``."""

from __future__ import annotations

import os
from typing import Any

from flowjit.backends.xla.jaxshim import (
    use_compilation_cache,
    use_compilation_cache_at_first_compile,
)


def _default_cache_dir() -> str | None:
    """FLOWJIT_CACHE_DIR ("" or "0": no cache), else the user's cache folder."""
    value = os.environ.get("FLOWJIT_CACHE_DIR")
    if value is not None:
        return None if value in ("", "0") else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "flowjit", "xla")


_DEFAULTS: dict[str, Any] = {
    # When more than N steps are queued a call waits until N // 2 are: this bounds the memory
    # queued steps hold (and avoids collective deadlocks, xla-notes Q4). On a small CPU host a
    # lower N costs throughput (the waiting thread and XLA share the cores): see bench/.
    "max_steps_in_flight": 32,
    # Verify the IR after every pass (always on in flowjit's own tests; costs compile time).
    "verify_passes": False,
    # Names of passes to skip, for debugging (passes lowering needs cannot be turned off).
    "disabled_passes": (),
    # Run compiled functions op by op on concrete values, for debugging (docs/debugging.md).
    # (FLOWJIT_EAGER=1 turns it on for a whole program.)
    "eager": os.environ.get("FLOWJIT_EAGER", "") not in ("", "0"),
    # Check every call's results and new variable values for NaN; on one, undo the call's
    # variable updates and raise fj.NaNError naming the first op that made a NaN and its line
    # (docs/errors.md, E11). Costs a copy of the variables and a host sync per call.
    # (FLOWJIT_CHECK_NANS=1 turns it on for a whole program.)
    "check_nans": os.environ.get("FLOWJIT_CHECK_NANS", "") not in ("", "0"),
    # A folder for IR dumps of every compilation (docs/debugging.md); None: no dumps.
    "dump_dir": os.environ.get("FLOWJIT_DUMP_DIR") or None,
    # jax's persistent compilation cache: compiled programs are kept in this folder, so a
    # second process starts compiled (docs/performance.md); None: no cache. Importing flowjit
    # changes no jax setting: the folder is given to jax at flowjit's first compile, unless
    # the process set jax_compilation_cache_dir itself; fj.config.update gives it at once.
    "cache_dir": _default_cache_dir(),
    # A folder to profile the whole program into (FLOWJIT_PROFILE=dir): from the first call of
    # a compiled function to the end of the process, as ``with fj.profile(dir):`` does, with
    # the per-line table written to <dir>/flowjit-profile.md at exit; None: no profile.
    "profile_dir": os.environ.get("FLOWJIT_PROFILE") or None,
}

# Programs that compile faster than this are not worth a cache file (a read costs ~1 ms).
CACHE_MIN_COMPILE_SECONDS = 0.01


class Config:
    """Settings are plain attributes (read on hot paths); ``update`` validates them."""

    def __init__(self) -> None:
        for name, value in _DEFAULTS.items():
            object.__setattr__(self, name, value)
        # A compiled function's call looks at this one flag before any other: eager mode,
        # NaN checks or a profile recording its calls (compiler/profiling.py) each set it.
        object.__setattr__(self, "profiling", False)
        self._set_call_hooks()

    def _set_call_hooks(self) -> None:
        hooks = self.eager or self.check_nans or self.profiling or self.profile_dir is not None
        object.__setattr__(self, "call_hooks", hooks)

    def _set_profiling(self, on: bool) -> None:
        """(Not a setting: ``fj.profile`` turns it on while it records.)"""
        object.__setattr__(self, "profiling", on)
        self._set_call_hooks()

    def update(self, name: str, value: Any) -> None:
        if name not in _DEFAULTS:
            raise KeyError(f"unknown flowjit setting {name!r}; known: {sorted(_DEFAULTS)}")
        if name == "max_steps_in_flight" and (not isinstance(value, int) or value < 1):
            raise ValueError(f"max_steps_in_flight must be an int >= 1, got {value!r}")
        if name in ("verify_passes", "eager", "check_nans") and not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}")
        if name in ("dump_dir", "cache_dir", "profile_dir"):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name} must be a folder path or None, got {value!r}")
        if name == "cache_dir":
            use_compilation_cache(value, CACHE_MIN_COMPILE_SECONDS)
        if name == "disabled_passes":
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"disabled_passes must be a list of pass names, got {value!r}")
            value = tuple(value)
        object.__setattr__(self, name, value)
        self._set_call_hooks()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"use fj.config.update({name!r}, value)")


config = Config()
use_compilation_cache_at_first_compile(config.cache_dir, CACHE_MIN_COMPILE_SECONDS)
