"""One step per concern in the per-API request chain."""
