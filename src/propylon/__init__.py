"""Propylon: API management with a fast JWT-validating gateway and Dynamic Client Registration."""

__version__ = "0.1.0"
