"""Where Propylon's own outbound requests may go (DESIGN §5): shared by both planes.

* ``guard``: the SSRF guard (``OutboundGuard``, ``GuardedTransport``): every address a host
  resolves to must be public unless an administrator allowed its network, and the connection goes
  to the checked address. The dashboard's identity-provider calls (``idp.outbound``) and the
  gateway's JWKS and discovery fetches (``gateway.jwks``) both go through it.

This part imports nothing else of Propylon's, so the data plane can use it without depending on
the control plane.
"""
