"""The demo of `propylon up`: a small upstream API, the seed written through the admin API, and the
headless flow of `propylon demo`."""
