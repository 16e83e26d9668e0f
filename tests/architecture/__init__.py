"""Architecture rules checked as tests."""
