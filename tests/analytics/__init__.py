"""Tests of analytics records, the buffer and the JSON-lines writer."""
