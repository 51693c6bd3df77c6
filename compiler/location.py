"""Source locations: the innermost frame of user code (flowjit's own frames are skipped), and
the checks of the front end's arguments whose errors name that line."""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Callable

import numpy as np

from flowjit.ir import ArgumentError, Location

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


def location_in(traceback: Any) -> Location | None:
    """The file:line of the innermost user code in ``traceback`` (an exception's)."""
    found = None
    while traceback is not None:
        if not _is_own(traceback.tb_frame):
            code = traceback.tb_frame.f_code
            found = Location(os.path.basename(code.co_filename), traceback.tb_lineno)
        traceback = traceback.tb_next
    return found


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


# -- arguments -------------------------------------------------------------------------------
_STATIC_HINT = (
    "; it must be known when the function is traced: pass a Python int (mark the argument it "
    "comes from static with static_argnums)"
)


def check_int(
    value: Any,
    what: str,
    *,
    op: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    wanted: str | None = None,
    hint: str = "",
) -> int:
    """``value`` as an int: a Python or numpy int (not a bool, a float or a traced Tensor) in
    ``[minimum, maximum]``; otherwise an ArgumentError at the user's line saying that ``what``
    must be ``wanted`` (by default "an int" and its range), then ``hint`` (how to fix it)."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if (
        not is_int
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        from .tensor import Tensor

        if wanted is None:
            wanted = "an int" + (
                f" in [{minimum}, {maximum}]"
                if minimum is not None and maximum is not None
                else f" >= {minimum}"
                if minimum is not None
                else ""
            )
        hint = _STATIC_HINT if isinstance(value, Tensor) else hint
        raise ArgumentError(
            f"{what} must be {wanted}, got {value!r}{hint}", op=op, loc=user_location()
        )
    return int(value)


def positional_parameters(fn: Callable) -> tuple[str, ...] | None:
    """The names of ``fn``'s positional parameters; None where they cannot be counted (it
    takes ``*args``, or Python cannot read its signature)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in kinds)


def check_argnums(
    argnums: Any,
    what: str,
    fn_name: str,
    params: tuple[str, ...] | None = None,
    *,
    given: int | None = None,
    by_name: str | None = None,
) -> tuple[int, ...]:
    """``argnums`` (an int or a sequence of ints: positions of positional arguments from 0,
    negative ones from the end) as a tuple. Each must be a position among ``params``
    (``fn_name``'s positional parameters; None: not known) or, for a call, among the
    ``given`` arguments. An ArgumentError at the user's line otherwise, saying what to write
    (for a name, the option ``by_name`` that takes names, or the name's position)."""
    items = tuple(argnums) if isinstance(argnums, (tuple, list)) else (argnums,)
    for a in items:
        hint = ""
        if isinstance(a, str) and by_name is not None:
            hint = f"; if you meant the argument {a!r}, use {by_name}={a!r}"
        elif isinstance(a, str) and params and a in params:
            hint = f"; if you meant the argument {a!r}, use {what}={params.index(a)}"
        check_int(a, what, wanted="an int or a sequence of ints (positions from 0)", hint=hint)
    count = given if given is not None else None if params is None else len(params)
    if count is not None and any(not -count <= a < count for a in items):
        how = "was called with" if given is not None else "takes"
        names = f" ({', '.join(params)})" if given is None and params else ""
        fix = f"; if you meant the last one, use {what}={count - 1}" if count else ""
        raise ArgumentError(
            f"{what}={argnums!r} is out of range: {fn_name} {how} {count} positional "
            f"argument{'s' * (count != 1)}{names}, numbered from 0{fix}",
            loc=user_location(),
        )
    return tuple(int(a) for a in items)
