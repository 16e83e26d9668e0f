"""Tests of JWT verification and the JWKS cache, through real HTTP to a local identity provider."""
