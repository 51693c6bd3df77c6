"""The sweep over jax's namespaces (issue 22): every public function of jax.numpy,
jax.numpy.linalg, jax.numpy.fft and jax.nn that ``jax.jit`` accepts, called on random inputs
through ``flowjit.numpy`` (``fnp.linalg``, ``fnp.fft``) or ``fj.nn`` inside ``fj.compile``,
equals jax's; the functions no call reaches are excluded, with why (tests/jaxsweep.py holds
the calls and the exclusions; scripts/jax_coverage.py counts them)."""

from __future__ import annotations

import jaxsweep
import numpy as np
import pytest
from jaxsweep import CALLS, EXCLUDED, NAMESPACES, UNSUPPORTED, Call, Case

LABELS = list(NAMESPACES)


@pytest.mark.parametrize("label", LABELS)
def test_every_public_function_is_called_or_excluded(label):
    prefix = NAMESPACES[label].prefix
    missing = {prefix + name for name in jaxsweep.cases(label)[1]}
    excluded = {
        name for name in EXCLUDED if name.startswith(prefix) and "." not in name[len(prefix) :]
    }
    assert not missing - excluded, f"no call reaches {sorted(missing - excluded)}: add a call to "
    "CALLS, or an exclusion with why to EXCLUDED (tests/jaxsweep.py)"
    assert not excluded - missing, f"excluded, but called: {sorted(excluded - missing)}"


def test_every_named_call_names_a_public_function():
    public = {
        ns.prefix + name
        for ns in NAMESPACES.values()
        for name in jaxsweep.public_functions(ns.jax_module)
    }
    stale = (set(CALLS) | set(EXCLUDED) | set(UNSUPPORTED)) - public
    assert not stale, f"not public functions of jax's namespaces: {sorted(stale)}"


@pytest.mark.parametrize("label", LABELS)
def test_flowjit_equals_jax_on_every_function(label):
    """Every function gives jax's result, but those UNSUPPORTED, which fail with flowjit's
    error about the dtype it lacks (never a wrong result)."""
    failures = jaxsweep.sweep(label)
    prefix = jaxsweep.NAMESPACES[label].prefix
    unsupported = {k for k in UNSUPPORTED if k.startswith(prefix) and "." not in k[len(prefix) :]}
    wrong = {name: why for name, why in failures.items() if prefix + name not in unsupported}
    assert not wrong, f"{len(wrong)} functions of {label} fail through flowjit:\n" + "\n".join(
        wrong.values()
    )
    for name in unsupported:
        message = failures.get(name[len(prefix) :], "")
        clear = "does not support" in message and "dtype" in message
        assert clear, f"{name}: {message or 'no error'}"


def test_a_result_that_differs_from_jax_is_a_failure():
    x = np.ones((3, 4), np.float32)
    case = Case("f", Call(), [], [x])
    jaxsweep.compare(case, (x,), "")
    for wrong in ((x + 1e-3,), (x.astype(np.float16),), (x[:2],), (x, x)):
        with pytest.raises(AssertionError):
            jaxsweep.compare(case, wrong, "")
