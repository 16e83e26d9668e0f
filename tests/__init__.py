"""Propylon test suite."""
