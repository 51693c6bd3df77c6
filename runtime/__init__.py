"""The runtime: executes compiled plans and keeps variable state on devices."""

from .config import config
from .plan import Plan, bound_in_flight, make_entry, run_plan, step_token, wait_for_steps_in_flight
from .steps import ClusterStep, HostStep, TransferStep
from .variables import VariableCell

__all__ = [
    "config",
    "Plan",
    "bound_in_flight",
    "wait_for_steps_in_flight",
    "make_entry",
    "run_plan",
    "step_token",
    "VariableCell",
    "ClusterStep",
    "HostStep",
    "TransferStep",
]
