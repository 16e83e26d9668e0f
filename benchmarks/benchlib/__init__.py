"""Helpers for ``benchmarks/gateway.py``: tokens and JWKS, processes, wrk, reports.

Not part of the ``propylon`` package and never imported by it; stdlib, PyJWT and cryptography only.
"""
