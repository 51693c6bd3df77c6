"""Single-file checkpoints: variables saved to, and restored from, one safetensors file
(``fj.save``/``fj.restore``, API.md section 9). Numbered checkpoints of a training state
(``fj.Checkpoint``) are orbax's: runtime/checkpoint_manager.py.

The format is safetensors (docs/checkpoints.md) with flowjit's ``__metadata__``: a format
marker, a version, a sha256 of the header and one of each tensor's bytes, so that truncation and
corruption are both detected. Nothing is pickled.

Contracts:
- ``save`` is atomic: the file is written under a temporary name in the same directory, flushed,
  fsynced and renamed over the final name, then the directory is fsynced. A crash at any moment
  leaves the old file or the new one under the final name, never a torn one.
- ``restore`` validates the whole file and every requested variable before it changes any: it
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
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from flowjit.backends.xla.jaxshim import jax
from flowjit.ir.errors import CheckpointError, ShapeError
from flowjit.ir.types import DTYPE_NAMES, MAX_RANK, TensorType, bfloat16
from flowjit.runtime.sharding import host_value
from flowjit.runtime.variables import VariableCell, VariableLocks

FORMAT = "flowjit.checkpoint"
VERSION = "1"

# safetensors' dtype names are the IR's short names upper-cased (f32 -> F32, bool -> BOOL).
_DTYPES: dict[str, np.dtype] = {name.upper(): dtype for name, dtype in DTYPE_NAMES.items()}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}
# As in the safetensors reference reader: a longer header means the file is something else.
_MAX_HEADER_BYTES = 100 * 2**20
_METADATA = "__metadata__"
_HEADER_SHA = "header_sha256"

PathLike = str | os.PathLike[str]
Variables = Iterable[VariableCell] | Mapping[str, VariableCell]


# -- the byte format ---------------------------------------------------------------------------
def _storage_dtype(dtype: np.dtype) -> np.dtype:
    """The little-endian dtype a tensor is stored as. bfloat16 travels as its uint16 bit
    pattern, so no conversion can touch a NaN payload."""
    return np.dtype("<u2") if dtype == bfloat16 else dtype.newbyteorder("<")


def _tensor_bytes(array: np.ndarray) -> np.ndarray:
    """The tensor's bytes on disk, as a flat uint8 array (a view when already little-endian)."""
    storage = _storage_dtype(array.dtype)
    stored = np.ascontiguousarray(array.view(storage.newbyteorder("=")), dtype=storage)
    return stored.reshape(-1).view(np.uint8)


def _tensor_from_bytes(buf: bytes, begin: int, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    storage = _storage_dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    stored = np.frombuffer(buf, storage, count, begin)
    return stored.astype(storage.newbyteorder("="), copy=False).view(dtype).reshape(shape)


def _canonical_json(header: dict[str, Any]) -> str:
    """The one text of a header: the header checksum is taken over it, with the checksum absent,
    and the reader recomputes it from the parsed header."""
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _header_digest(header: dict[str, Any]) -> str:
    unsigned = dict(header)
    unsigned[_METADATA] = {k: v for k, v in header[_METADATA].items() if k != _HEADER_SHA}
    return hashlib.sha256(_canonical_json(unsigned).encode()).hexdigest()


def _encode(arrays: dict[str, np.ndarray]) -> list[Any]:
    """The file's chunks: length, header, tensor bytes. Tensors are laid out widest dtype first,
    so with the 8-byte-aligned header every tensor starts aligned to its item size."""
    order = sorted(arrays, key=lambda name: -arrays[name].dtype.itemsize)
    blobs = {name: _tensor_bytes(arrays[name]) for name in order}
    header: dict[str, Any] = {}
    metadata = {"format": FORMAT, "version": VERSION}
    offset = 0
    for name in order:
        size = blobs[name].size
        header[name] = {
            "dtype": _DTYPE_CODES[arrays[name].dtype],
            "shape": list(arrays[name].shape),
            "data_offsets": [offset, offset + size],
        }
        metadata[f"sha256:{name}"] = hashlib.sha256(blobs[name]).hexdigest()
        offset += size
    header[_METADATA] = metadata
    metadata[_HEADER_SHA] = _header_digest(header)
    text = _canonical_json(header).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads with spaces so the data starts aligned
    return [struct.pack("<Q", len(text)), text, *(blobs[name] for name in order)]


class _Reader:
    """Parses and validates one checkpoint file; every failure is a CheckpointError naming the
    file and either the variable concerned or the variables being restored."""

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

    def read(self) -> dict[str, np.ndarray]:
        """Every tensor of the file, each checked against its checksum."""
        with open(self.path, "rb") as f:
            buf = f.read()
        header, data_start = self._header(buf)
        data_size = len(buf) - data_start
        entries = self._entries(header)
        end = 0
        for name, (dtype, shape, begin, stop) in sorted(entries.items(), key=lambda e: e[1][2]):
            if begin != end:
                raise self.fail(f"data_offsets start at {begin}, expected {end}", name)
            if stop > data_size:
                raise self.fail(
                    f"the file is truncated: the data needs bytes {begin}..{stop} but holds only "
                    f"{data_size}",
                    name,
                )
            end = stop
        if end != data_size:
            raise self.fail(f"{data_size - end} bytes follow the last tensor; the file is corrupt")
        arrays = {}
        for name, (dtype, shape, begin, stop) in entries.items():
            digest = hashlib.sha256(memoryview(buf)[data_start + begin : data_start + stop])
            if digest.hexdigest() != header[_METADATA].get(f"sha256:{name}"):
                raise self.fail("its data fails the sha256 checksum; the file is corrupt", name)
            arrays[name] = _tensor_from_bytes(buf, data_start + begin, dtype, shape)
        return arrays

    def _header(self, buf: bytes) -> tuple[dict[str, Any], int]:
        if len(buf) < 8:
            raise self.fail(
                f"the file is truncated or not a checkpoint: it has {len(buf)} bytes, fewer than "
                "the 8-byte header length"
            )
        (size,) = struct.unpack("<Q", buf[:8])
        if size > min(_MAX_HEADER_BYTES, len(buf) - 8):
            raise self.fail(
                f"the file is truncated or not a checkpoint: its header length field says {size} "
                f"bytes but {len(buf) - 8} follow"
            )
        try:
            header = json.loads(buf[8 : 8 + size].decode("utf-8"))
        # ValueError: bad UTF-8 or JSON, or an integer of more digits than Python converts;
        # RecursionError: lists or objects nested too deep.
        except (ValueError, RecursionError) as e:
            raise self.fail(f"the header is not valid JSON ({e}); the file is corrupt") from None
        if not isinstance(header, dict) or not isinstance(header.get(_METADATA), dict):
            raise self.fail("the header has no __metadata__; this is not a flowjit checkpoint")
        metadata = header[_METADATA]
        if metadata.get("format") != FORMAT:
            raise self.fail(f"__metadata__ lacks format {FORMAT!r}; not a flowjit checkpoint")
        if metadata.get("version") != VERSION:
            raise self.fail(
                f"format version {metadata.get('version')!r} is not {VERSION!r}; it was written "
                "by another flowjit version"
            )
        # Before the checksum, which writes the header out again: a shape of millions of
        # dimensions costs seconds to write, and no flowjit file, corrupt or not, has one.
        for name, info in header.items():
            shape = info.get("shape") if isinstance(info, dict) and name != _METADATA else None
            if isinstance(shape, list) and len(shape) > MAX_RANK:
                raise self.fail(
                    f"its shape has {len(shape)} dimensions; a tensor has at most {MAX_RANK}; "
                    "the file is corrupt",
                    name,
                )
        if metadata.get(_HEADER_SHA) != _header_digest(header):
            raise self.fail("the header fails its sha256 checksum; the file is corrupt")
        return header, 8 + size

    def _entries(self, header: dict[str, Any]) -> dict[str, tuple[np.dtype, list[int], int, int]]:
        """name -> (dtype, shape, begin, end); a well-formed safetensors entry for each tensor.

        The rank is already checked (``_header``), so the element count is cheap, and messages
        quote a header's values cut short: a hostile header costs time linear in its size."""
        entries = {}
        for name, info in header.items():
            if name == _METADATA:
                continue
            if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
                raise self.fail(f"malformed header entry {_excerpt(info)}", name)
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if not isinstance(dtype, str) or dtype not in _DTYPES:
                raise self.fail(
                    f"unknown dtype {_excerpt(dtype)}; flowjit reads {sorted(_DTYPES)}", name
                )
            if not (_is_int_list(shape) and _is_int_list(offsets) and len(offsets) == 2):
                raise self.fail(
                    f"malformed shape {_excerpt(shape)} or data_offsets {_excerpt(offsets)}", name
                )
            try:
                type_ = TensorType(tuple(shape), _DTYPES[dtype])
            except ShapeError as e:
                raise self.fail(f"{e.detail}; the file is corrupt", name) from None
            nbytes = type_.size * type_.dtype.itemsize
            if offsets[1] - offsets[0] != nbytes:
                raise self.fail(
                    f"data_offsets {offsets} span {offsets[1] - offsets[0]} bytes but "
                    f"{dtype}{shape} needs {nbytes}",
                    name,
                )
            entries[name] = (_DTYPES[dtype], shape, offsets[0], offsets[1])
        return entries


def _is_int_list(x: Any) -> bool:
    return isinstance(x, list) and all(type(i) is int and i >= 0 for i in x)


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


def _write_atomically(path: str, chunks: Iterable[Any]) -> None:
    tmp = _temporary_name(path)
    try:
        # O_EXCL: never write through a file (or link) someone else put under that name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
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
        arrays = {name: host_value(cell._ready()) for name, cell in cells.items()}
    if _writes():
        _write_atomically(path, _encode(arrays))
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
    reader = _Reader(path, cells)
    arrays = reader.read()
    for name, cell in cells.items():
        if name not in arrays:
            raise reader.fail(f"not in the checkpoint, which holds {sorted(arrays)}", name)
        saved = TensorType(arrays[name].shape, arrays[name].dtype)
        if saved != cell.type:
            raise reader.fail(
                f"the checkpoint holds {saved} but the variable is {cell.type}; create the "
                f"variable as {saved}, or pass a dict to restore another name into it",
                name,
            )
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
