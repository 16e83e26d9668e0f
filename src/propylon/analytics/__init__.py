"""Analytics records: one per request, buffered and written off the hot path."""
