"""StableHLO lowerings of ir/ops/linalg.py (being written)."""
