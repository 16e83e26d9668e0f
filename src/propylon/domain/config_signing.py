"""Signing of the configuration snapshot the dashboard publishes to gateways.

The dashboard signs the exact bytes of each snapshot body with HMAC-SHA256 under the node secret
that it shares with its gateways; a gateway applies a snapshot only when the signature over the
bytes it received matches. The same check runs again when a gateway loads the snapshot it saved to
disk, so a tampered file is refused just like a tampered response. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Propylon-Signature"
"""HTTP response header carrying the snapshot signature."""

MIN_SECRET_LENGTH = 32
"""Shortest node secret accepted on either side; a short shared secret can be guessed offline
from one signed snapshot."""

_PREFIX = "sha256="


def sign_snapshot(body: bytes, secret: str) -> str:
    """Return ``"sha256=" + hex HMAC-SHA256`` of ``body`` under ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_snapshot(body: bytes, signature: str, secret: str) -> bool:
    """Whether ``signature`` is the signature of ``body`` under ``secret`` (constant time)."""
    expected = sign_snapshot(body, secret)
    # compare_digest needs both sides ASCII-only str or bytes; a header may hold anything.
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))
