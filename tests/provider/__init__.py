"""Tests of the embedded OpenID provider (``propylon idp``), through a real process."""
