"""StableHLO lowerings of ir/ops/nn.py (being written)."""
