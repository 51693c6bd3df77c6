"""The runtime: executes compiled plans (and, later, keeps variable state on devices)."""

from .plan import Plan, make_entry, run_plan

__all__ = ["Plan", "make_entry", "run_plan"]
