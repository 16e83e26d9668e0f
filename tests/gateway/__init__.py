"""Gateway tests through real sockets on loopback."""
