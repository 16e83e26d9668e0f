"""Tyk Classic migration tests."""
