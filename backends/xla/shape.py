"""StableHLO lowerings of ir/ops/shape.py (being written)."""
