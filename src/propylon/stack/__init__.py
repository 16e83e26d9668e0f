"""The embedded stack behind `propylon up`: starting, watching and stopping its processes."""
