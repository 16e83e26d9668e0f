"""Tests of the declarative gateway file: loading, validation reporting, watching."""
