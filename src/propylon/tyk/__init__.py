"""Migration from Tyk Classic: translate API definitions and policies (pure)."""
