"""StableHLO lowerings of ir/ops/index.py (being written)."""
