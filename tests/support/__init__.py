"""Helpers shared by test suites: a real local identity provider (``tests.support.idp``)."""
