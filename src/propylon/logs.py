"""Process-wide logging set-up, done once by the CLI (never at import time)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr with timestamps; ``level`` is a standard logging level name."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
        force=True,
    )
    # httpx logs every outbound request at INFO; JWKS fetches are logged by the gateway itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
