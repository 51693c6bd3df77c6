"""The reference backend: a numpy interpreter of the IR. It defines what a graph means."""

from .interpreter import run_graph, run_op

__all__ = ["run_graph", "run_op"]
