"""Unit tests of the pure enforcement math (``propylon.policy``) and the in-memory counters."""
