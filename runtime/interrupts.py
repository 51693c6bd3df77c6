"""Holding Ctrl-C while a step's variables change hands (issue 20, item 1).

A stateful step donates its variables' old buffers to the jitted call and rebinds the new ones
after it returns. Python raises a KeyboardInterrupt at the first bytecode after a C call
returns, so a SIGINT that arrives while the step is dispatched used to drop the call's results
with the old buffers already gone: every variable the step writes was lost. Between
``hold_interrupts()`` and ``release_interrupts()`` (in the main thread, where Python runs its
signal handlers) a SIGINT is recorded instead, and delivered to the handler that was in place
once the variables are rebound: the step's variables are all old or all new, and the natural
``except KeyboardInterrupt: fj.save(...)`` finds them readable.

Swapping the handler around every step costs about 9 us (``signal.signal``), so flowjit's
handler is installed once, at the first stateful step in the main thread, in front of the one
in place (Python's, which raises KeyboardInterrupt, or the user's); outside a step it calls
that handler at once. A handler the user installs later replaces it (and steps then do not
hold Ctrl-C)."""

from __future__ import annotations

import signal
import threading
from typing import Any

_MAIN = threading.main_thread().ident
_held = 0  # how deep the main thread is in steps that hold interrupts
_pending: tuple[int, Any] | None = None  # a SIGINT that arrived meanwhile
_previous: Any = None  # the handler flowjit's stands in front of
_installed = False


def hold_interrupts() -> bool:
    """Hold SIGINT until ``release_interrupts``; returns whether it is held (only in the main
    thread: other threads' steps are not interrupted by Python)."""
    global _held
    if threading.get_ident() != _MAIN:
        return False
    if not _installed:
        _install()
    _held += 1
    return True


def release_interrupts() -> None:
    """End a ``hold_interrupts``; a SIGINT that arrived meanwhile is delivered now."""
    global _held
    _held -= 1
    if not _held and _pending is not None:
        deliver_interrupt()


def interrupt_pending() -> bool:
    """Whether a SIGINT arrived while held and waits for ``release_interrupts``."""
    return _pending is not None


def deliver_interrupt() -> None:
    """Run the handler on a held SIGINT now (it raises KeyboardInterrupt, usually): for a wait
    that gave back what it held (``VariableLocks``), so the user is not kept waiting."""
    global _pending
    if _pending is not None:
        signum, frame = _pending
        _pending = None
        _previous(signum, frame)


def _install() -> None:
    global _installed, _previous
    _installed = True  # (once: a handler the user sets later is theirs)
    current = signal.getsignal(signal.SIGINT)
    if callable(current):  # (not SIG_IGN or SIG_DFL, or a handler set outside Python)
        _previous = current
        signal.signal(signal.SIGINT, _handler)


def _handler(signum: int, frame: Any) -> None:
    global _pending
    if _held:
        _pending = (signum, frame)
        return
    _previous(signum, frame)


__all__ = [
    "deliver_interrupt",
    "hold_interrupts",
    "interrupt_pending",
    "release_interrupts",
]
