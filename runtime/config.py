"""flowjit's settings: ``fj.config.update(name, value)`` and ``fj.config.name``."""

from __future__ import annotations

from typing import Any

_DEFAULTS: dict[str, Any] = {
    # A call waits for the step N calls back before returning when N steps are queued; this
    # bounds device memory held by queued steps (and avoids collective deadlocks, xla-notes Q4).
    "max_steps_in_flight": 4,
}


class Config:
    def __init__(self) -> None:
        self._values = dict(_DEFAULTS)

    def update(self, name: str, value: Any) -> None:
        if name not in self._values:
            raise KeyError(f"unknown flowjit setting {name!r}; known: {sorted(self._values)}")
        if name == "max_steps_in_flight" and (not isinstance(value, int) or value < 1):
            raise ValueError(f"max_steps_in_flight must be an int >= 1, got {value!r}")
        self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"unknown flowjit setting {name!r}") from None


config = Config()
