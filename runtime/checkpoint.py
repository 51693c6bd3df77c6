"""Single-file checkpoints: variables saved to, and restored from, one safetensors file
(``fj.save``/``fj.restore``, API.md section 9), for sharing weights. Numbered checkpoints of a
training state (``fj.Checkpoint``) are orbax's: runtime/checkpoint_manager.py.

The file is written and read by the ``safetensors`` library (DESIGN.md: existing engines for
what they own); flowjit adds its ``__metadata__``: a format marker, a version, a sha256 of each
tensor's bytes and one of the header's meaning (every tensor's name, dtype and shape, and the
metadata), so that corruption the format itself cannot see (a flipped data byte, a dtype
changed to another of the same width) is detected. Nothing is pickled.

Contracts:
- ``save`` is atomic: the file is written under a temporary name in the same directory,
  fsynced and renamed over the final name, then the directory is fsynced. A crash at any moment
  leaves the old file or the new one under the final name, never a torn one.
- ``restore`` validates the file and every requested variable before it changes any: it
  either restores all of them, bit-exactly (bfloat16 NaN payloads and -0.0 included), or raises
  ``CheckpointError`` naming the file and the variable and leaves all of them as they were.
- Sharded variables are saved whole (their shards gathered) and restored with their sharding:
  each device receives only its shard. In a multi-process run every process calls ``save``
  and ``restore`` (gathering is collective); process 0 writes the file, and every process reads
  it, so the directory must be shared (docs/checkpoints.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir.errors import CheckpointError, ShapeError
from flowjit.ir.types import DTYPE_NAMES, MAX_RANK, TensorType
from flowjit.runtime.sharding import host_value
from flowjit.runtime.variables import VariableCell, VariableLocks

FORMAT = "flowjit.checkpoint"
# "2": written by the safetensors library, header_sha256 over the tensors' names, dtypes and
# shapes; "1" (still read): written by hand, header_sha256 over the whole header's JSON
VERSION = "2"
_READ_VERSIONS = ("1", "2")

# safetensors' dtype names are the IR's short names upper-cased (f32 -> F32, bool -> BOOL).
_DTYPES: dict[str, np.dtype] = {name.upper(): dtype for name, dtype in DTYPE_NAMES.items()}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_METADATA = "__metadata__"
_HEADER_SHA = "header_sha256"

PathLike = str | os.PathLike[str]
Variables = Iterable[VariableCell] | Mapping[str, VariableCell]


# -- checksums -----------------------------------------------------------------------------------
def _stored_bytes(array: np.ndarray) -> np.ndarray:
    """The tensor's bytes as safetensors stores them (row-major, little-endian), flat uint8."""
    array = np.ascontiguousarray(array)
    if sys.byteorder != "little" and array.dtype.itemsize > 1:
        array = array.byteswap()
    return array.reshape(-1).view(np.uint8)


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _header_digest(types: Mapping[str, tuple[str, list[int]]], metadata: Mapping) -> str:
    """Version 2's header checksum: the sha256 of the canonical JSON of each tensor's dtype
    and shape and of the metadata without this checksum (docs/checkpoints.md)."""
    meaning = {
        "tensors": {name: [code, list(shape)] for name, (code, shape) in types.items()},
        _METADATA: {k: v for k, v in metadata.items() if k != _HEADER_SHA},
    }
    return hashlib.sha256(_canonical_json(meaning).encode()).hexdigest()


def _raw_header_digest(path: str, metadata: Mapping) -> str:
    """Version 1's header checksum: over the whole header as JSON, without this checksum (the
    header has been parsed by safetensors already: it is JSON of bounded size)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header[_METADATA] = {k: v for k, v in metadata.items() if k != _HEADER_SHA}
    return hashlib.sha256(_canonical_json(header).encode()).hexdigest()


def _encode_metadata(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    metadata = {"format": FORMAT, "version": VERSION}
    for name, array in arrays.items():
        metadata[f"sha256:{name}"] = hashlib.sha256(_stored_bytes(array)).hexdigest()
    types = {name: (_DTYPE_CODES[a.dtype], list(a.shape)) for name, a in arrays.items()}
    metadata[_HEADER_SHA] = _header_digest(types, metadata)
    return metadata


class _Reader:
    """Opens and validates one checkpoint file with the safetensors library; every failure is
    a CheckpointError naming the file and either the variable concerned or the variables being
    restored."""

    def __init__(self, path: str, wanted: Iterable[str]):
        self.path, self.wanted = path, list(wanted)

    def fail(self, detail: str, variable: str | None = None) -> CheckpointError:
        if variable is None:
            shown = ", ".join(map(repr, self.wanted[:5]))
            more = f", ... ({len(self.wanted)} in all)" if len(self.wanted) > 5 else ""
            where = f"restoring {shown}{more}" if self.wanted else "restoring no variable"
        else:
            where = f"variable {variable!r}"
        return CheckpointError(
            f"checkpoint {self.path}, {where}: {detail}; no variable was changed"
        )

    def read(self, cells: Mapping[str, VariableCell]) -> dict[str, np.ndarray]:
        """The values of ``cells`` (name -> variable) in the file, each checked against its
        checksum, once the file's header and every variable's name and type are checked."""
        import safetensors

        if not stat.S_ISREG(os.stat(self.path).st_mode):  # (a FIFO would block; /dev/zero)
            raise self.fail("not a regular file, so not a checkpoint")
        try:
            with safetensors.safe_open(self.path, framework="numpy") as f:
                metadata = f.metadata() or {}
                self._check_metadata(metadata)
                types = {}
                for name in f.keys():
                    part = f.get_slice(name)
                    types[name] = (part.get_dtype(), part.get_shape())
                self._check_types(types, metadata)
                for name, cell in cells.items():
                    self._check_variable(name, cell, types)
                arrays = {}
                for name in cells:
                    array = f.get_tensor(name)
                    digest = hashlib.sha256(_stored_bytes(array)).hexdigest()
                    if digest != metadata.get(f"sha256:{name}"):
                        raise self.fail(
                            "its data fails the sha256 checksum; the file is corrupt", name
                        )
                    arrays[name] = array
                return arrays
        except safetensors.SafetensorError as err:
            raise self.fail(
                f"not a valid safetensors file (safetensors: {str(err)[:200]}); the "
                "file is truncated, corrupt or not a checkpoint"
            ) from None

    def _check_metadata(self, metadata: Mapping[str, str]) -> None:
        if metadata.get("format") != FORMAT:
            raise self.fail(
                f"its __metadata__ lacks format {FORMAT!r}; not a flowjit checkpoint (a "
                "safetensors file of other weights: read it with safetensors.numpy.load_file "
                "and assign the arrays)"
            )
        if metadata.get("version") not in _READ_VERSIONS:
            raise self.fail(
                f"format version {_excerpt(metadata.get('version'))} is not one of "
                f"{_READ_VERSIONS}; it was written by another flowjit version"
            )

    def _check_types(self, types: Mapping[str, tuple[str, list[int]]], metadata: Mapping) -> None:
        """Every tensor's dtype and shape are flowjit's, and the header checksum matches."""
        for name, (code, shape) in types.items():
            # (before the checksum, which writes the shapes out again)
            if len(shape) > MAX_RANK:
                raise self.fail(
                    f"its shape has {len(shape)} dimensions; a tensor has at most {MAX_RANK}; "
                    "the file is corrupt",
                    name,
                )
            if code not in _DTYPES:
                raise self.fail(
                    f"unknown dtype {_excerpt(code)}; flowjit reads {sorted(_DTYPES)}", name
                )
            try:
                TensorType(tuple(shape), _DTYPES[code])
            except ShapeError as e:
                raise self.fail(f"{e.detail}; the file is corrupt", name) from None
        if metadata.get("version") == "1":
            expected = _raw_header_digest(self.path, metadata)
        else:
            expected = _header_digest(types, metadata)
        if metadata.get(_HEADER_SHA) != expected:
            raise self.fail("the header fails its sha256 checksum; the file is corrupt")

    def _check_variable(
        self, name: str, cell: VariableCell, types: Mapping[str, tuple[str, list[int]]]
    ) -> None:
        if name not in types:
            shown = sorted(types)
            raise self.fail(f"not in the checkpoint, which holds {_excerpt(shown)}", name)
        code, shape = types[name]
        saved = TensorType(tuple(shape), _DTYPES[code])
        if saved != cell.type:
            raise self.fail(
                f"the checkpoint holds {saved} but the variable is {cell.type}; create the "
                f"variable as {saved}, or pass a dict to restore another name into it",
                name,
            )


def _excerpt(value: Any, most: int = 80) -> str:
    """``repr(value)`` cut to ``most`` characters for an error message (a header's values may be
    megabytes long); a long list is cut before it is formatted."""
    text = repr(value[:most] if isinstance(value, list) else value)
    return text if len(text) <= most else f"{text[:most]}..."


# -- atomic writes -----------------------------------------------------------------------------
def _temporary_name(path: str) -> str:
    directory, base = os.path.split(path)
    # Hidden and unique per attempt; Checkpoint recognises and removes leftovers by this shape.
    return os.path.join(directory, f".{base}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows has no directory handles)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(temporary)`` fills a new file beside ``path``, which then replaces ``path``."""
    tmp = _temporary_name(path)
    try:
        # O_EXCL: the name is claimed as a new file of ours, never a file (or link) someone
        # else put under it, before the writer opens it again
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(os.path.dirname(path) or ".")


# -- the public functions ------------------------------------------------------------------------
def _by_name(variables: Variables, where: str) -> dict[str, VariableCell]:
    """Name -> variable, from a list (each named by ``.name``), or by path from a module (its
    ``named_variables()``) or a dict, whose values may be dicts, lists and modules in turn
    (``{"blocks": [{"w": v}]}`` holds ``blocks/0/w``); ``where`` starts any error message."""
    if not isinstance(variables, VariableCell) and hasattr(variables, "named_variables"):
        items = list(variables.named_variables().items())
    elif isinstance(variables, Mapping):
        items = _paths(variables, "", where)
    elif isinstance(variables, Iterable) and not isinstance(variables, (str, VariableCell)):
        items = []
        for i, cell in enumerate(variables):
            if not isinstance(cell, VariableCell):
                raise CheckpointError(
                    f"{where}: item {i} of the list is a {type(cell).__name__}, not a Variable; "
                    "to save nested structures by path, pass a dict (or a module)"
                )
            items.append((cell.name, cell))
    else:
        raise CheckpointError(
            f"{where}: variables must be a list of Variables, a dict of them (nested dicts, "
            f"lists and modules allowed) or a module, got {type(variables).__name__}; wrap a "
            "single variable in a list"
        )
    out: dict[str, VariableCell] = {}
    for name, cell in items:
        if not isinstance(cell, VariableCell):
            raise CheckpointError(f"{where}: {name!r} is a {type(cell).__name__}, not a Variable")
        if not isinstance(name, str) or not name or name == _METADATA:
            raise CheckpointError(
                f"{where}: {name!r} cannot name a variable in a checkpoint; use a non-empty "
                f"string other than {_METADATA!r}"
            )
        if name in out:
            raise CheckpointError(
                f"{where}: two variables are named {name!r}; give them distinct names "
                "(Variable(..., name=...)) or pass a dict name -> Variable"
            )
        out[name] = cell
    return out


def _paths(tree: Any, prefix: str, where: str) -> list[tuple[str, Any]]:
    """(path, leaf) of a dict's nested dicts, lists, tuples and modules, keys joined by "/"."""
    if isinstance(tree, VariableCell):
        return [(prefix, tree)]
    if hasattr(tree, "named_variables"):
        return [(f"{prefix}/{k}", v) for k, v in tree.named_variables().items()]
    if isinstance(tree, Mapping):
        children = list(tree.items())
    elif isinstance(tree, (list, tuple)):
        children = list(enumerate(tree))
    else:
        return [(prefix, tree)]  # (not a Variable: the caller names it)
    out = []
    for key, child in children:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise CheckpointError(
                f"{where}: the key {key!r} under {prefix or 'the top'!r} cannot be part of a "
                "path; use str keys"
            )
        out.extend(_paths(child, f"{prefix}/{key}" if prefix else str(key), where))
    return out


def save(path: PathLike, variables: Variables) -> None:
    """Write the variables' current values to ``path``, atomically (module docstring).

    ``variables`` is a list (each saved under its ``.name``; the names must be unique), a dict
    name -> variable (nested dicts, lists and modules saved by path, ``blocks/0/w``) or a module
    (by its variables' paths). An existing file at ``path`` is replaced only once the new one
    is complete and on disk."""
    path = os.fspath(path)
    cells = _by_name(variables, f"cannot save checkpoint {path}")
    with VariableLocks(cells.values()):  # (a step of another thread would donate them)
        arrays = {
            name: np.asarray(host_value(cell._ready()), order="C") for name, cell in cells.items()
        }
    if _writes():
        import safetensors.numpy

        metadata = _encode_metadata(arrays)
        _write_atomically(path, lambda tmp: safetensors.numpy.save_file(arrays, tmp, metadata))
    _all_processes_reach(f"flowjit.save {path}")


def _writes() -> bool:
    """Whether this process writes checkpoint files (process 0 of a multi-process run)."""
    return jax.process_index() == 0


def _all_processes_reach(point: str) -> None:
    """In a multi-process run, wait until every process is here (after process 0 wrote)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(point)


def restore(path: PathLike, variables: Variables) -> None:
    """Set each variable to its value in the checkpoint at ``path``, bit-exactly.

    ``variables`` is a list (looked up by ``.name``) or a dict checkpoint-name -> variable; the
    file may hold more tensors than requested. All or nothing: the file's header, sizes, offsets
    and checksums, the presence of every requested name and each one's shape and dtype are
    checked before any variable changes; a failure is a CheckpointError naming the file and the
    variable. A missing file is FileNotFoundError.

    A folder (or a ``gs://`` URL) is read as a plain orbax PyTree checkpoint, as a jax or flax
    program writes one: each name is a path in its tree, keys joined by "/"
    (``{"params": net}`` reads flax's ``params/Dense_0/kernel`` into the module's
    ``Dense_0/kernel``); see docs/checkpoints.md."""
    path = os.fspath(path)
    cells = _by_name(variables, f"cannot restore checkpoint {path}")
    if os.path.isdir(path) or "://" in path:  # plain orbax (a jax or flax program's)
        from .checkpoint_manager import restore_orbax_tree

        return restore_orbax_tree(path, cells)
    arrays = _Reader(path, cells).read(cells)
    with VariableLocks(cells.values()):  # (no step of another thread sees half of them)
        previous = {name: cell._value for name, cell in cells.items()}  # (lost ones too)
        try:
            for name, cell in cells.items():
                cell.set_value(arrays[name])
        except BaseException:
            # Everything was validated; only the device can fail here (out of memory). Put
            # back the previous arrays so the all-or-nothing contract still holds.
            for name, cell in cells.items():
                cell._rebind(previous[name])
            raise
