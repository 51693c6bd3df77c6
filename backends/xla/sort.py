"""StableHLO lowerings of ir/ops/sort.py (being written)."""
