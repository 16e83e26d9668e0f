"""The demo pieces `propylon up` starts: a small upstream API and a seed configuration."""
