"""Source locations: the innermost frame of user code (flowjit's own frames are skipped)."""

from __future__ import annotations

import os
import sys

from flowjit.ir import Location

_OWN_MODULES = ("flowjit", "jax", "jaxlib", "contextlib", "functools")


_OWN_FILES: dict[str, bool] = {}  # file name -> whether _is_own (found by walking stacks)


def _is_own(frame) -> bool:
    """Frames of flowjit itself, and of jax, which calls the traced function."""
    filename = frame.f_code.co_filename
    own = _OWN_FILES.get(filename)
    if own is None:
        own = frame.f_globals.get("__name__", "").partition(".")[0] in _OWN_MODULES
        if not filename.startswith("<"):  # ("<string>" code can come from anywhere)
            _OWN_FILES[filename] = own
    return own


def user_location() -> Location | None:
    """The file:line of the user's code that is running now (None if there is none)."""
    frame = sys._getframe(1)
    while frame is not None and _is_own(frame):
        frame = frame.f_back
    if frame is None:
        return None
    return Location(os.path.basename(frame.f_code.co_filename), frame.f_lineno)


def with_user_location(fn):
    """Decorate a front-end function so a FlowjitError raised below it without a location
    gets the user's line (and the function's name as the op, if none is set)."""
    import functools

    from flowjit.ir import FlowjitError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FlowjitError as err:
            if err.loc is None:
                raise err.with_context(op=fn.__name__, loc=user_location()) from None
            raise

    return wrapper


def wrap_public_functions(namespace: dict, module_name: str) -> None:
    """Apply ``with_user_location`` to every public function defined in a module."""
    for name, value in list(namespace.items()):
        if (
            callable(value)
            and not name.startswith("_")
            and isinstance(value, type(wrap_public_functions))
            and value.__module__ == module_name
        ):
            namespace[name] = with_user_location(value)
