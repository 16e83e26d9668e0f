"""The demo configuration ``propylon up`` serves until the dashboard and embedded IdP exist."""

from __future__ import annotations

from propylon.domain.config import GatewayConfig, parse_config


def demo_config(upstream_port: int) -> GatewayConfig:
    """A keyless demo API in front of the echo upstream, with a visible rate limit."""
    return parse_config({
        "version": "demo-1",
        "apis": [{
            "id": "demo",
            "name": "Demo echo API",
            "listen_path": "/demo/",
            "upstream": f"http://127.0.0.1:{upstream_port}/",
            "strip_listen_path": True,
            "auth": {"type": "keyless", "policies": ["demo-keyless"]},
        }],
        "policies": [{
            "id": "demo-keyless",
            "rate": {"requests": 5, "per_seconds": 10},
            "quota": {"max": 1000, "renewal_seconds": 3600},
            "access_rights": {"demo": {}},
        }],
    })
