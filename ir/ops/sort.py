"""sort ops (being written)."""
