"""Numbered checkpoints of a whole training state, on orbax-checkpoint (``fj.Checkpoint``,
API.md sections 9 and 12; docs/checkpoints.md).

What is saved: named variables (a model's by path, an optimizer's slots, a generator's state,
a step counter, or any list or dict of Variables) and a JSON-able state of the data pipeline.
Orbax writes them (DESIGN.md: existing engines for what they own): each process writes only
its own shards, in parallel, to a local folder or any TensorStore URL (``gs://...``).

Step ``n`` is orbax's folder ``<directory>/<n>`` with two items:
- ``state``: the variables as a nested dict (their names split at "/"), readable by plain
  orbax (``ocp.PyTreeCheckpointer().restore(<directory>/<n>/state)``);
- ``flowjit``: JSON: the format, each variable's shape, dtype and fingerprint, the data
  pipeline's state. A fingerprint is two uint32 sums over the variable's bits, computed on the
  devices as it is saved and again after it is read back: a restore that reads other bytes
  than were written (a corrupt chunk) is refused rather than restored wrong.

Contracts:
- **Asynchronous.** ``save`` holds the variables' locks only while orbax copies them to host
  memory, so a step queued next cannot donate a buffer being read, then returns; orbax writes
  on in the background. A later ``save``, ``restore``, ``wait_until_finished`` or ``close``
  waits for it. A save still being written when the process ends is lost (Python 3.12 starts
  no thread during shutdown, and orbax's writes need new ones): the earlier steps stay whole,
  and a hook says so on stderr.
- **Atomic.** orbax writes a step into a temporary folder and renames it once complete; a
  process killed mid-save leaves the previous steps as they were (the temporary folder is
  removed by the next writer). Old steps beyond ``max_to_keep`` are deleted only after the
  new one is complete.
- **One writer.** A writer holds an exclusive lock on ``<directory>/.flowjit-writer`` (local
  folders) from its first save; a second writer on the folder is refused with a
  CheckpointError naming the holder's process, so neither deletes the other's newer steps.
- **All or nothing, never wrong.** ``restore`` checks the step's folder first (no symlinks,
  FIFOs or devices; no file larger than the saved arrays could need; metadata of bounded size,
  so a hostile folder costs bounded time and memory), reads every requested variable into
  fresh arrays laid out as the variable is (any mesh: orbax reshards, also to another number
  of devices), compares fingerprints, and only then rebinds them all at once, holding their
  locks and Ctrl-C. Any failure is a CheckpointError naming the folder (and the variable) and
  changes nothing.
"""

from __future__ import annotations

import atexit
import errno
import json
import operator
import os
import queue
import re
import stat
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import numpy as np

from flowjit.backends.xla.jaxshim import jax, jnp
from flowjit.ir.errors import CheckpointError
from flowjit.ir.types import DTYPE_NAMES, TensorType

from .interrupts import hold_interrupts, release_interrupts
from .variables import VariableCell, VariableLocks

FORMAT = "flowjit.checkpoint"
VERSION = 3
_STATE, _META = "state", "flowjit"
_WRITER_LOCK = ".flowjit-writer"
_DELETED = ".flowjit-deleted"  # old steps moved here, then deleted
_STEP_NAME = re.compile(r"0|[1-9][0-9]{0,17}")
# Bounds on a step folder read back (a hostile folder costs bounded time and memory)
_MAX_ENTRIES = 100_000
_MAX_METADATA_BYTES = 64 * 2**20
_SLACK_BYTES = 64 * 2**20  # beyond the saved arrays' bytes: orbax's indexes and framing
_POLL_S = 0.05  # how often a wait for orbax looks for a Ctrl-C
# what to do when a checkpoint holds more of a group than is restored
_STRICT_HINT = {
    "model/": "the model has fewer variables than the saved one; build the same model",
    "optimizer/": "the optimizer has not made its state for them yet: call "
    "opt.state(variables) (the variables as apply gets them) before restoring",
    "rng/": "pass the same generators",
}
_DTYPES_BY_NAME = {name: np.dtype(dtype) for name, dtype in DTYPE_NAMES.items()}


def _orbax() -> Any:
    import orbax.checkpoint as ocp  # (imported on first use: it is large)

    return ocp


# -- names -> orbax's nested dict --------------------------------------------------------------
def _segment(text: str) -> str:
    """One path segment as an orbax key: orbax joins keys with "." in its files, so "." (and
    "%", the escape) are percent-encoded."""
    return text.replace("%", "%25").replace(".", "%2E")


_VALUE = "__value__"  # the key of a variable whose name is also a folder's ("w" and "w/mu")


def _keys(name: str, folders: set[str]) -> list[str]:
    """The keys of variable ``name`` in the nested dict, given the names that are folders."""
    keys = [_segment(s) for s in name.split("/")]
    return keys + [_VALUE] if name in folders else keys


def _folders(names: Iterable[str]) -> set[str]:
    """Every name's proper prefixes: {"w/mu"} -> {"w"}."""
    out = set()
    for name in names:
        parts = name.split("/")
        out.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return out


def _nest(flat: Mapping[str, Any], saved: Iterable[str] | None = None) -> dict:
    """{"a/b": x, "a/c": y} -> {"a": {"b": x, "c": y}}; a name that is also a folder (a
    variable "w" beside its optimizer slot "w/mu") goes under the folder's key __value__. The
    layout is that of the names ``saved`` (default: ``flat``'s own)."""
    folders = _folders(flat if saved is None else saved)
    tree: dict = {}
    for name, value in flat.items():
        *outer, leaf = _keys(name, folders)
        node = tree
        for key in outer:
            node = node.setdefault(key, {})
        if leaf in node:
            raise CheckpointError(f"checkpoint names {name!r} twice")
        node[leaf] = value
    return tree


def _flat(tree: Mapping[str, Any], names: Iterable[str], saved: Iterable[str]) -> dict:
    """The values of ``names`` in ``tree``, laid out as ``_nest`` lays out ``saved``."""
    folders = _folders(saved)
    out = {}
    for name in names:
        node: Any = tree
        for key in _keys(name, folders):
            node = node[key]
        out[name] = node
    return out


# -- fingerprints ------------------------------------------------------------------------------
def _words(x: Any) -> Any:
    """The array's bits as a flat uint32 vector (sub-32-bit types widened, 64-bit split)."""
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)


def _fingerprint(x: Any) -> Any:
    """Two sums mod 2**32 over the array's bits, each word weighted by its position: equal
    for the same bytes however the array is sharded, different for a changed or moved word.
    Both sums are one variadic reduce: one pass over the array (on XLA's CPU backend a plain
    uint32 ``jnp.sum`` was ten times slower: 0.4 s per GiB each)."""
    words = _words(x)
    index = jnp.arange(words.shape[0], dtype=jnp.uint32)
    weighted = words * (index * jnp.uint32(2) + jnp.uint32(1))
    mixed = (words ^ (index * jnp.uint32(0x9E3779B9))) * jnp.uint32(0x85EBCA6B)
    first, second = jax.lax.reduce(
        (weighted, mixed ^ (mixed >> jnp.uint32(13))),
        (jnp.uint32(0), jnp.uint32(0)),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
        (0,),
    )
    return jnp.stack([first, second])


_fingerprints = jax.jit(lambda arrays: [_fingerprint(a) for a in arrays])


def fingerprints(arrays: list) -> list[list[int]]:
    """Each array's fingerprint, [first, second] (every process computes them all: the arrays
    may span processes, and each process reads its own replica of the result)."""
    groups: dict = {}  # (one program per set of devices: jax.jit takes no mix)
    for i, a in enumerate(arrays):
        groups.setdefault(frozenset(a.sharding.device_set), []).append(i)
    outs: list = [None] * len(arrays)
    for members in groups.values():
        for i, out in zip(members, _fingerprints([arrays[i] for i in members])):
            outs[i] = out
    return [[int(w) for w in np.asarray(out.addressable_data(0))] for out in outs]


# -- the folder checks ---------------------------------------------------------------------------
def _check_folder(folder: str, data_bytes: int | None) -> None:
    """CheckpointError unless ``folder`` is a real folder of regular files and folders, none a
    symlink, none larger than ``data_bytes`` (the saved arrays' bytes, when known; else the
    metadata bound) plus slack. Bounded: at most _MAX_ENTRIES entries are looked at."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} does not exist") from None
    if stat.S_ISLNK(info.st_mode):
        raise CheckpointError(
            f"checkpoint {folder} is a symlink (to {os.readlink(folder)!r}); a checkpoint "
            "step is a folder that the writer made: remove the link"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise CheckpointError(
            f"checkpoint {folder} is not a folder ({_kind(info.st_mode)}); remove it, or "
            "restore another step"
        )
    # (data_bytes None: the first look, before the metadata says how large the arrays are;
    # the metadata files themselves are read with a bound, _read_json)
    limit = None if data_bytes is None else _MAX_METADATA_BYTES + data_bytes + _SLACK_BYTES
    seen, stack = 0, [folder]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                seen += 1
                if seen > _MAX_ENTRIES:
                    raise CheckpointError(
                        f"checkpoint {folder} holds more than {_MAX_ENTRIES} files; it is not "
                        "one flowjit wrote"
                    )
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    stack.append(entry.path)
                    continue
                if not stat.S_ISREG(mode):
                    raise CheckpointError(
                        f"checkpoint {folder}: {entry.path} is {_kind(mode)}, not a regular "
                        "file; the checkpoint is damaged or not one flowjit wrote"
                    )
                size = entry.stat(follow_symlinks=False).st_size
                if limit is not None and size > limit:
                    raise CheckpointError(
                        f"checkpoint {folder}: {entry.path} claims {size} bytes, more than "
                        f"the saved arrays could need ({limit}); the file is damaged"
                    )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _read_json(path: str, where: str) -> Any:
    """A small JSON file of the checkpoint (bounded size), or CheckpointError naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise CheckpointError(f"{where}: {path} is missing; the step is incomplete") from None
        raise CheckpointError(f"{where}: cannot open {path} ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CheckpointError(f"{where}: {path} is not a regular file")
        text = f.read(_MAX_METADATA_BYTES + 1)
    if len(text) > _MAX_METADATA_BYTES:
        raise CheckpointError(f"{where}: {path} is larger than {_MAX_METADATA_BYTES} bytes")
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{where}: {path} is not valid JSON ({err})") from None


def _saved_entries(meta: Any, path: str) -> tuple[dict[str, TensorType], dict[str, list]]:
    """The variables' types and fingerprints in a step's flowjit metadata (checked)."""
    where = f"checkpoint metadata {path}"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a flowjit checkpoint (no format {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{where}: format version {meta.get('version')!r}; this flowjit reads version "
            f"{VERSION}. Read it with the flowjit that wrote it"
        )
    variables = meta.get("variables")
    if not isinstance(variables, dict):
        raise CheckpointError(f"{where}: 'variables' is not a dict")
    types, prints = {}, {}
    for name, entry in variables.items():
        try:
            shape = tuple(operator.index(d) for d in entry["shape"])
            dtype = _DTYPES_BY_NAME[entry["dtype"]]
            fingerprint = [operator.index(w) for w in entry["fingerprint"]]
            if any(d < 0 for d in shape) or len(shape) > 64 or len(fingerprint) != 2:
                raise ValueError
            types[name], prints[name] = TensorType(shape, dtype), fingerprint
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{where}: the entry of variable {name!r} is not a shape, a dtype and a "
                f"fingerprint: {json.dumps(entry)[:80]}"
            ) from None
    return types, prints


def _dtype_name(dtype: Any) -> str:
    return next(name for name, d in _DTYPES_BY_NAME.items() if d == np.dtype(dtype))


_HELPER: list = []  # [(the helper thread, its queue of calls)], started on first use
_HELPER_LOCK = threading.Lock()


def _helper_loop(calls: "queue.SimpleQueue") -> None:
    while True:
        fn, args, kwargs, done, result = calls.get()
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as err:
            result["error"] = err
        finally:
            done.set()


def off_main_thread(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run on flowjit's checkpoint helper thread while this one waits
    for it: a Ctrl-C interrupts the wait (KeyboardInterrupt here), never orbax halfway through
    committing or reading a step (it kept the interrupt, wrapped it in its own errors, and
    once left a step folder missing an item). An error of ``fn`` is raised here.

    One long-lived helper, not a thread per call: a new thread gets a new malloc arena, whose
    fresh pages made orbax's reads of 1 GiB take twice as long (2.3 s against 1.0 s here).
    Calls from several threads run one after another."""
    with _HELPER_LOCK:
        if not _HELPER or not _HELPER[0][0].is_alive():
            calls: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(
                target=_helper_loop, args=(calls,), name="flowjit-checkpoint", daemon=True
            )
            thread.start()
            _HELPER[:] = [(thread, calls)]
        thread, calls = _HELPER[0]
    if threading.current_thread() is thread:
        return fn(*args, **kwargs)  # (a call made by a call on the helper)
    done, result = threading.Event(), {}
    calls.put((fn, args, kwargs, done, result))
    while not done.wait(_POLL_S):
        pass
    if "error" in result:
        raise result["error"]
    return result["value"]


# -- the end of the process: a save in flight is reported ----------------------------------------
_LIVE: "weakref.WeakSet[CheckpointManager]" = weakref.WeakSet()
_HOOKED = False


def _finish_at_exit(manager: "CheckpointManager") -> None:
    """Watch ``manager`` at the end of the process: a save still being written then is lost
    (Python 3.12 starts no thread during shutdown, and orbax's write needs new ones), so the
    hook says so on stderr, naming the step; the previous steps stay whole. A program ends its
    saves with ``close()``, ``wait_until_finished()`` or ``with fj.Checkpoint(...)``."""
    global _HOOKED
    _LIVE.add(manager)
    if not _HOOKED:
        register = getattr(threading, "_register_atexit", atexit.register)
        register(_report_unfinished)
        _HOOKED = True


def _report_unfinished() -> None:
    for manager in list(_LIVE):
        step = manager._in_flight
        orbax_manager = manager._orbax_manager
        if step is None or orbax_manager is None:
            continue
        try:
            busy = orbax_manager.is_saving_in_progress()
        except Exception:
            busy = True
        if busy:
            print(
                f"flowjit: checkpoint step {step} in {manager.directory} was still being "
                "written when the process ended and is lost (the earlier steps are whole); "
                "end a run with ckpt.close() or ckpt.wait_until_finished()",
                file=sys.stderr,
            )


# -- the manager ---------------------------------------------------------------------------------
class CheckpointManager:
    """Numbered checkpoints of named variables and a JSON-able extra state, in ``directory``
    (module docstring). ``fj.Checkpoint`` collects the variables of a model, an optimizer and
    the rest at each save and restore and hands them here, by name."""

    def __init__(self, directory: Any, max_to_keep: int | None = 3, async_save: bool = True):
        self.directory = os.fspath(directory)
        self._local = "://" not in self.directory
        if self._local:  # (orbax takes absolute paths)
            self.directory = os.path.abspath(self.directory)
        if max_to_keep is not None and (type(max_to_keep) is not int or max_to_keep < 1):
            raise CheckpointError(
                f"checkpoint directory {self.directory}: max_to_keep must be a positive int "
                f"or None (keep all), got {max_to_keep!r}"
            )
        self.max_to_keep = max_to_keep
        if self._local:
            os.makedirs(self.directory, exist_ok=True)
        self._async_save = async_save
        self._orbax_manager: Any = None
        self._lock_file: Any = None
        self._in_flight: int | None = None  # the step of the last save, until waited for

    @property
    def _manager(self) -> Any:
        """Orbax's manager of the folder (made again after ``close``)."""
        if self._orbax_manager is None:
            ocp = _orbax()
            self._orbax_manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=self.max_to_keep,
                    enable_async_checkpointing=self._async_save,
                    create=True,
                    cleanup_tmp_directories=False,  # (the writer cleans, holding the lock)
                    # a step past max_to_keep is renamed away (atomic) before it is deleted:
                    # one killed mid-delete leaves no half step under a step's name
                    todelete_subdir=_DELETED,
                ),
                item_names=(_STATE, _META),
            )
            _finish_at_exit(self)
        return self._orbax_manager

    # -- saving --------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """The steps in the directory, ascending. In a local folder, every entry named by a
        step number counts (orbax names a step's folder so only once it is complete): one that
        is not a checkpoint is then refused by ``restore``, clearly, rather than skipped."""
        if not self._local:
            self._manager.reload()
            return sorted(self._manager.all_steps())
        return sorted(int(n) for n in os.listdir(self.directory) if _STEP_NAME.fullmatch(n))

    def save(self, step: int, cells: Mapping[str, VariableCell], extra: Any = None) -> str:
        """Save the variables ``cells`` (name -> variable) and ``extra`` (JSON-able) as
        ``step``; returns its folder. The call returns once the values are in host memory; the
        write goes on meanwhile."""
        step = check_step(step)
        where = f"checkpoint directory {self.directory}"
        self._take_writer_lock()
        self.wait_until_finished()  # (orbax would wait for the save in flight all the same)
        self._purge_deleted()
        existing = self.steps()
        if step in existing:
            raise CheckpointError(
                f"{where}: step {step} is saved already; save a higher step (orbax does not "
                "replace a step in place)"
            )
        if existing and step < existing[-1]:
            raise CheckpointError(
                f"{where}: step {step} is below the latest saved step {existing[-1]}; steps are "
                "saved in increasing order: save a higher step"
            )
        kept = sorted(set(existing) | {step}, reverse=True)[: self.max_to_keep]
        if step not in kept:
            raise CheckpointError(
                f"{where}: step {step} is older than the {self.max_to_keep} kept steps "
                f"{sorted(kept)} and would be deleted at once; save a higher step"
            )
        try:
            text = json.dumps(extra)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{where}: the data state is not JSON ({err})") from None
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "variables": {
                name: {"shape": list(cell.shape), "dtype": _dtype_name(cell.dtype)}
                for name, cell in cells.items()
            },
            "extra": json.loads(text),
        }
        ocp = _orbax()
        names = list(cells)
        # Ctrl-C is held until orbax has its host copies: orbax interrupted inside save keeps
        # the KeyboardInterrupt and raises it again at a later wait (a Ctrl-C that comes in the
        # meantime is raised when save returns)
        held = hold_interrupts()
        try:
            with VariableLocks(cells.values()):  # (a queued step would donate them)
                values = [cell._checked() for cell in cells.values()]
                for entry, fingerprint in zip(meta["variables"].values(), fingerprints(values)):
                    entry["fingerprint"] = fingerprint
                self._manager.reload()  # (steps another writer saved before this one had the lock)
                saved = self._manager.save(
                    step,
                    args=ocp.args.Composite(
                        **{
                            _STATE: ocp.args.PyTreeSave(_nest(dict(zip(names, values)))),
                            _META: ocp.args.JsonSave(meta),
                        }
                    ),
                )  # (returns once orbax holds host copies: the locks can go)
                self._in_flight = step if saved else self._in_flight
        finally:
            if held:
                release_interrupts()
        if not saved:
            raise CheckpointError(f"{where}: orbax did not save step {step}")
        return os.path.join(self.directory, str(step))

    def wait_until_finished(self) -> None:
        """Wait until every save has been written (raises a failed write's error)."""
        manager = self._orbax_manager
        if manager is None:
            return  # (none in flight)
        try:
            off_main_thread(manager.wait_until_finished)
        except Exception as err:
            raise CheckpointError(
                f"checkpoint directory {self.directory}: a save failed while it was written: "
                f"{type(err).__name__}: {err}"
            ) from err
        self._in_flight = None

    def _take_writer_lock(self) -> None:
        if self._lock_file is not None or not self._local or jax.process_index() != 0:
            return
        import fcntl

        path = os.path.join(self.directory, _WRITER_LOCK)
        f = open(path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read(200).strip() or "unknown"
            f.close()
            raise CheckpointError(
                f"checkpoint directory {self.directory} is being written by another "
                f"fj.Checkpoint ({holder}); one writer per directory: save to another "
                "directory, or close the other (ckpt.close())"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        self._lock_file = f
        self._remove_temporary_folders()

    def _remove_temporary_folders(self) -> None:
        """Folders of saves that never finished and of old steps being deleted (their writer
        was killed)."""
        import shutil

        for name in os.listdir(self.directory):
            if ".orbax-checkpoint-tmp" in name or name == _DELETED:
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def _purge_deleted(self) -> None:
        """Delete the old steps orbax moved aside (the writer's saves have finished)."""
        if self._lock_file is not None:
            import shutil

            shutil.rmtree(os.path.join(self.directory, _DELETED), ignore_errors=True)

    def close(self) -> None:
        """Wait for the saves in flight, then let another writer have the directory (a later
        save takes it again)."""
        if self._orbax_manager is None:
            return
        try:
            self.wait_until_finished()
            self._purge_deleted()
        finally:
            self._orbax_manager.close()
            self._orbax_manager = None
            _LIVE.discard(self)
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    # -- restoring -------------------------------------------------------------------------------
    def restore(
        self,
        step: int | None,
        cells: Mapping[str, VariableCell],
        strict: Iterable[str] = (),
        check_extra: Callable[[Any], None] | None = None,
    ) -> tuple:
        """Read ``step`` (the latest when None) into the variables ``cells`` (name ->
        variable), all or nothing (module docstring); returns (step, extra). For each prefix
        in ``strict`` ("model/"), the saved names under it must be exactly those asked for;
        ``check_extra`` raises CheckpointError if the saved extra state will not do."""
        self.wait_until_finished()  # (a save in flight is a step to restore, too)
        steps = self.steps()
        where = f"checkpoint directory {self.directory}"
        if not steps:
            raise CheckpointError(f"{where} holds no checkpoint")
        step = steps[-1] if step is None else check_step(step)
        if step not in steps:
            raise CheckpointError(f"{where} has no step {step}; it has {steps}")
        folder = os.path.join(self.directory, str(step))
        if self._local:
            _check_folder(folder, None)
            meta = _read_json(os.path.join(folder, _META, "metadata"), f"checkpoint {folder}")
        else:
            meta = self._read_meta(step, folder)
        saved, saved_prints = _saved_entries(meta, os.path.join(folder, _META))
        if check_extra is not None:  # (before any variable changes)
            check_extra(meta.get("extra"))
        for name, cell in cells.items():
            if name not in saved:
                raise CheckpointError(
                    f"checkpoint {folder}: variable {name!r} is not in it (it holds "
                    f"{sorted(saved)[:8]}{'...' if len(saved) > 8 else ''})"
                )
            if saved[name] != cell.type:  # (checked below: the strict groups)
                raise CheckpointError(
                    f"checkpoint {folder}: variable {name!r} is saved as {saved[name]} but "
                    f"the variable is {cell.type}; create the variable as {saved[name]}"
                )
        for prefix in strict:
            missing = sorted(n for n in saved if n.startswith(prefix) and n not in cells)
            if missing:
                raise CheckpointError(
                    f"checkpoint {folder} holds {len(missing)} variables under {prefix!r} that "
                    f"are not being restored ({', '.join(missing[:4])}"
                    f"{', ...' if len(missing) > 4 else ''}): {_STRICT_HINT.get(prefix, '')}"
                )
        if self._local:  # (now that the arrays' sizes are known: no file beyond them)
            total = sum(int(np.prod(t.shape)) * t.dtype.itemsize for t in saved.values())
            _check_folder(folder, total)
        values = self._read(folder, cells, saved)
        computed = fingerprints(list(values.values()))
        for name, mine in zip(values, computed):
            if mine != saved_prints[name]:
                raise CheckpointError(
                    f"checkpoint {folder}: variable {name!r} reads back other bytes than were "
                    "saved (its fingerprint differs); the checkpoint is damaged: restore "
                    "another step"
                )
        _rebind(cells, values)
        return step, meta.get("extra")

    def _read_meta(self, step: int, folder: str) -> Any:
        ocp = _orbax()
        try:
            out = off_main_thread(
                self._manager.restore,
                step,
                args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}),
            )
        except Exception as err:
            raise CheckpointError(f"checkpoint {folder}: cannot read its metadata ({err})") from err
        return out[_META]

    def _read(self, folder: str, cells: Mapping[str, VariableCell], saved: Iterable[str]) -> dict:
        """The values of ``cells``, read from the step ``folder`` (whose variables are named
        ``saved``) into the variables' shardings: plain orbax reading the state item."""
        abstract = {
            name: jax.ShapeDtypeStruct(cell.shape, cell.dtype, sharding=_target(cell))
            for name, cell in cells.items()
        }
        try:
            out = off_main_thread(
                _orbax().PyTreeCheckpointer().restore,
                os.path.join(folder, _STATE),
                args=_partial_restore(_nest(abstract, saved)),
            )
            return _flat(out, cells, saved)
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {folder}: cannot read it back ({type(err).__name__}: "
                f"{str(err)[:300]}); the checkpoint is damaged: restore another step"
            ) from err


def _target(cell: VariableCell | None) -> Any:
    """The sharding a variable's value is read into: its own, else the default device."""
    sharding = None if cell is None else cell.sharding
    if sharding is not None:
        return sharding
    return jax.sharding.make_single_device_sharding(jax.devices()[0])


def check_step(step: Any) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        value = -1
    if isinstance(step, bool) or value < 0:
        raise CheckpointError(f"a checkpoint step is a non-negative int, got {step!r}")
    return value


def _rebind(cells: Mapping[str, VariableCell], values: Mapping[str, Any]) -> None:
    """Every variable to its value read back, at once: holding their locks and Ctrl-C."""
    held = hold_interrupts()
    try:
        with VariableLocks(cells.values()):
            for name, cell in cells.items():
                cell._rebind(values[name])
    finally:
        if held:
            release_interrupts()


def _partial_restore(nested: dict) -> Any:
    """orbax's arguments reading the arrays of ``nested`` (ShapeDtypeStructs with their
    shardings) and only those."""
    ocp = _orbax()
    return ocp.args.PyTreeRestore(
        item=nested,
        restore_args=ocp.checkpoint_utils.construct_restore_args(nested),
        partial_restore=True,
    )


def _nbytes(leaf: Any) -> int:
    return int(np.prod(getattr(leaf, "shape", ()))) * np.dtype(leaf.dtype).itemsize


# -- a checkpoint written by jax or flax: plain orbax ------------------------------------------
def restore_orbax_tree(path: str, cells: Mapping[str, VariableCell]) -> None:
    """Set each variable of ``cells`` (path -> variable) to the array at that path of the plain
    orbax PyTree checkpoint ``path`` (a jax/flax program's ``ocp.StandardCheckpointer().save``
    or ``PyTreeCheckpointer().save``: the path joins the tree's keys with "/", as in
    ``params/Dense_0/kernel``). All or nothing, read into each variable's sharding; shapes and
    dtypes are checked first, and each error names the folder and the path."""
    where = f"orbax checkpoint {path}"
    local = "://" not in path
    if local:
        _check_folder(path, None)
    ocp = _orbax()
    try:
        metadata = ocp.PyTreeCheckpointer().metadata(path)
        tree = getattr(metadata, "item_metadata", metadata)
        tree = getattr(tree, "tree", tree)
        saved = {
            "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in keys): leaf
            for keys, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        }
    except Exception as err:
        raise CheckpointError(f"{where}: not an orbax PyTree checkpoint ({err})") from err
    for name, cell in cells.items():
        if name not in saved:
            raise CheckpointError(
                f"{where}: no array at path {name!r}; it holds {sorted(saved)[:8]}"
                f"{'...' if len(saved) > 8 else ''}"
            )
        leaf = saved[name]
        saved_type = TensorType(tuple(getattr(leaf, "shape", ())), np.dtype(leaf.dtype))
        if saved_type != cell.type:
            raise CheckpointError(
                f"{where}: {name!r} is saved as {saved_type} but the variable is {cell.type}"
            )
    if local:  # (no file larger than all the saved arrays could need)
        _check_folder(path, sum(_nbytes(leaf) for leaf in saved.values()))
    abstract: dict = {}
    for name, cell in cells.items():
        node = abstract
        *outer, leaf_key = name.split("/")
        for key in outer:
            node = node.setdefault(key, {})
        node[leaf_key] = jax.ShapeDtypeStruct(cell.shape, cell.dtype, sharding=_target(cell))
    try:
        out = off_main_thread(
            ocp.PyTreeCheckpointer().restore,
            path,
            args=_partial_restore(abstract),
        )
        values = {}
        for name in cells:
            node = out
            for key in name.split("/"):
                node = node[key]
            values[name] = node
    except Exception as err:
        raise CheckpointError(
            f"{where}: cannot read it ({type(err).__name__}: {str(err)[:300]})"
        ) from err
    _rebind(cells, values)
