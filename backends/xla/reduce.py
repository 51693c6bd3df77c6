"""StableHLO lowerings of ir/ops/reduce.py (being written)."""
