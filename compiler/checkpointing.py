"""``fj.Checkpoint``: the whole training state a resumed run needs, saved and restored by
path name, on orbax (API.md sections 9 and 12; the storage is runtime/checkpoint_manager.py).

    ckpt = fj.Checkpoint("runs/a", model=net, optimizer=opt, rng=gen, data=loader, step=step,
                         max_to_keep=3)
    ckpt.save()            # async: returns once the values are copied to host memory
    ckpt.restore()         # the latest step, all or nothing; returns the step

Groups and their names in the checkpoint:
- ``variables``: a list (each by its ``.name``) or dict of Variables, by name as given;
- ``model``: a module, or a dict/list of Variables, modules and more of them, by path under
  ``model/`` (``model/blocks/3/attn/query/kernel``);
- ``optimizer``: an ``fj.optim`` optimizer (or a list of them), its state Variables by name
  under ``optimizer/`` (``optimizer/blocks/3/attn/query/kernel/mu``, ``.../count``);
- ``rng``: an ``fj.random.Generator`` (or a dict/list of them), under ``rng/``;
- ``step``: a Variable counting steps, as ``step``; ``save()`` then takes its value;
- ``data``: an iterator with ``get_state``/``set_state`` (``fj.data.prefetch`` of a Grain
  loader, or Grain's own), its state kept as the step's JSON metadata.

Each group is collected anew at every save and restore (an optimizer makes its state at its
first update). A restore asks for exactly the saved names of each group given: an optimizer
that has not made its state yet, or a model of another shape, is a CheckpointError, not a
partial restore."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from flowjit.ir import CheckpointError
from flowjit.runtime.checkpoint import _by_name
from flowjit.runtime.checkpoint_manager import CheckpointManager, check_step

from .optim import Optimizer
from .random_api import Generator
from .variable import Variable


class Checkpoint:
    """Numbered, asynchronous checkpoints of a training state in ``directory`` (a local
    folder or a TensorStore URL such as ``gs://bucket/run``); module docstring."""

    def __init__(
        self,
        directory: Any,
        variables: Any = None,
        *,
        model: Any = None,
        optimizer: Any = None,
        rng: Any = None,
        data: Any = None,
        step: Any = None,
        max_to_keep: int | None = 3,
        async_save: bool = True,
    ):
        self.directory = os.fspath(directory)
        where = f"checkpoint directory {self.directory}"
        if all(x is None for x in (variables, model, optimizer, rng, step)):
            raise CheckpointError(
                f"{where}: nothing to save; pass variables=, model=, optimizer=, rng= or step="
            )
        optimizers = [optimizer] if isinstance(optimizer, Optimizer) else list(optimizer or [])
        for opt in optimizers:
            if not isinstance(opt, Optimizer):
                raise CheckpointError(
                    f"{where}: optimizer= takes fj.optim optimizers, got {type(opt).__name__}"
                )
        if step is not None and not (isinstance(step, Variable) and step.shape == ()):
            raise CheckpointError(
                f"{where}: step= takes a scalar Variable counting steps (fj.Variable(0)), got "
                f"{step!r}"
            )
        if data is not None and not (
            callable(getattr(data, "get_state", None))
            and callable(getattr(data, "set_state", None))
        ):
            raise CheckpointError(
                f"{where}: data= takes an iterator with get_state and set_state (Grain's, or "
                f"fj.data.prefetch of one); a {type(data).__name__} has no state to save"
            )
        self._variables, self._model, self._optimizers = variables, model, optimizers
        self._rng, self._data, self._step = rng, data, step
        self._manager = CheckpointManager(self.directory, max_to_keep, async_save)
        self.directory = self._manager.directory  # (absolute)
        self._collect()  # (bad groups fail here, not at the first save)

    def _collect(self) -> dict:
        """Name -> Variable of every group, as they are now."""
        where = f"checkpoint directory {self.directory}"
        out: dict = {}

        def add(prefix: str, named: Mapping) -> None:
            for name, cell in named.items():
                key = f"{prefix}{name}"
                if key in out and out[key] is not cell:
                    raise CheckpointError(f"{where}: two variables are named {key!r}")
                out[key] = cell

        if self._variables is not None:
            add("", _by_name(self._variables, where))
        if self._model is not None:
            add("model/", _by_name(self._model, where))
        for opt in self._optimizers:
            add("optimizer/", {v.name: v for v in opt.variables()})
        if self._rng is not None:
            add("rng/", _by_name(_generator_states(self._rng, where), where))
        if self._step is not None:
            add("", {"step": self._step})
        return out

    def _strict(self) -> tuple[str, ...]:
        groups = (
            ("model/", self._model),
            ("optimizer/", self._optimizers or None),
            ("rng/", self._rng),
        )
        return tuple(prefix for prefix, given in groups if given is not None)

    def path(self, step: int) -> str:
        """The folder of ``step``."""
        return os.path.join(self.directory, str(check_step(step)))

    def steps(self) -> list[int]:
        """The complete steps saved in the directory, ascending."""
        return self._manager.steps()

    def save(self, step: int | None = None) -> str:
        """Save the state as ``step`` (default: the step variable's value); returns the step's
        folder. Returns once the values are in host memory; the files are written meanwhile
        (``wait_until_finished`` waits for them)."""
        if step is None:
            if self._step is None:
                raise CheckpointError(
                    f"checkpoint directory {self.directory}: save(step) needs a step, or "
                    "Checkpoint(..., step=a_step_variable)"
                )
            step = int(self._step.value)
        extra = None if self._data is None else {"data": _encode(self._data.get_state())}
        return self._manager.save(check_step(step), self._collect(), extra)

    def wait_until_finished(self) -> None:
        """Wait until every save has been written; raises CheckpointError if one failed."""
        self._manager.wait_until_finished()

    def restore(self, step: int | None = None) -> int:
        """Restore ``step`` (the latest when None): every variable of every group, and the
        data iterator's state, all or nothing; returns the step."""
        data_state: list = []

        def check_extra(extra: Any) -> None:  # (before any variable changes)
            if self._data is None:
                return
            if not isinstance(extra, dict) or "data" not in extra:
                raise CheckpointError(
                    f"checkpoint directory {self.directory}: the step holds no data state; "
                    "it was saved without data="
                )
            data_state.append(_decode(extra["data"]))

        step, _ = self._manager.restore(step, self._collect(), self._strict(), check_extra)
        if self._data is not None:
            self._data.set_state(data_state[0])
        return step

    def close(self) -> None:
        """Wait for saves in flight and let another writer have the directory."""
        self._manager.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _generator_states(rng: Any, where: str) -> Any:
    """The state Variables of a Generator, or of a dict or list of them, by the same keys."""
    if isinstance(rng, Generator):
        return {"state": rng.state}
    if isinstance(rng, Mapping):
        return {k: _generator_states(v, where) for k, v in rng.items()}
    if isinstance(rng, (list, tuple)):
        return [_generator_states(v, where) for v in rng]
    raise CheckpointError(f"{where}: rng= takes fj.random.Generator objects, got {rng!r}")


def _encode(state: Any) -> Any:
    """A data iterator's state as JSON: Grain's DataLoader gives bytes."""
    if isinstance(state, bytes):
        return {"bytes": base64.b64encode(state).decode("ascii")}
    return {"json": state}


def _decode(saved: Any) -> Any:
    if isinstance(saved, dict) and set(saved) == {"bytes"}:
        return base64.b64decode(saved["bytes"])
    if isinstance(saved, dict) and set(saved) == {"json"}:
        return saved["json"]
    raise CheckpointError(f"a checkpoint's data state is not one flowjit wrote: {saved!r:.80}")
