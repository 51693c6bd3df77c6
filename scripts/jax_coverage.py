"""Prints flowjit's coverage of jax's namespaces (issue 22) as markdown: for jax.numpy,
jax.numpy.linalg, jax.numpy.fft and jax.nn, how many public functions there are, how many
flowjit defines itself, how many pass the sweep (tests/jaxsweep.py: each function called on
random inputs through flowjit inside ``fj.compile`` equals ``jax.jit``'s) natively and through
the bridge (``fj.from_jax``), how many are excluded and how many fail; then the failures, the
exclusions with why, and the parameters of jax's that flowjit's own functions do not take.
The counts come from the sweep's own tables and runs, so that the two cannot disagree.

    .venv/bin/python scripts/jax_coverage.py   (about a minute)
"""

from __future__ import annotations

import inspect
import pathlib
import sys
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import jaxsweep  # (tests/jaxsweep.py)

# Parameters a flowjit function need not take: jax accepts only None for ``out``, and flowjit
# places and shards values itself.
IGNORED_PARAMETERS = {"out", "out_sharding", "device"}


def missing_parameters(ns: jaxsweep.Namespace, name: str) -> list[str]:
    """jax's parameters of ``name`` that can be passed by name (past the first, the array, and
    those flowjit need not take) and that flowjit's own function does not take by that name."""
    ours = inspect.signature(getattr(ns.flowjit, name)).parameters
    if any(p.kind is p.VAR_KEYWORD for p in ours.values()):
        return []
    theirs = list(inspect.signature(getattr(ns.jax_module, name)).parameters.values())[1:]
    by_name = (p for p in theirs if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return [p.name for p in by_name if p.name not in ours and p.name not in IGNORED_PARAMETERS]


def main() -> None:
    warnings.simplefilter("ignore")  # (jax's deprecation warnings for some names)
    rows, failures, signatures = [], {}, {}
    for label, ns in jaxsweep.NAMESPACES.items():
        names = jaxsweep.public_functions(ns.jax_module)
        native = {n for n in names if jaxsweep.is_native(ns, n)}
        found, missing = jaxsweep.cases(label)
        failed = jaxsweep.sweep(label)
        passing = set(found) - set(failed)
        rows.append(
            f"| {label} | {len(names)} | {len(native)} | {len(passing - native)} | "
            f"{len(passing & native)} | {len(missing)} | {len(failed)} | "
            f"{len(native)} -> {len(passing)} |"
        )
        failures.update({ns.prefix + n: e for n, e in failed.items()})
        for n in sorted(native):
            lacking = missing_parameters(ns, n)
            if lacking:
                signatures[ns.prefix + n] = lacking
    print(
        "| namespace | public functions | native | bridge, passing | native, passing "
        "| excluded | failing | covered: native before -> passing after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n**Failing ({len(failures)})**\n")
    print("\n".join(f"- `{error}`" for error in failures.values()))
    print(f"\n**Excluded ({len(jaxsweep.EXCLUDED)})**\n")
    print("\n".join(f"- `{n}`: {why}" for n, why in jaxsweep.EXCLUDED.items()))
    print(f"\n**flowjit's own functions without some of jax's parameters ({len(signatures)})**\n")
    print("\n".join(f"- `{n}`: {', '.join(p)}" for n, p in signatures.items()))


if __name__ == "__main__":
    main()
