"""Outbound adapters to identity providers: Propylon acting as an OAuth client of an IdP.

* ``outbound``: the one way requests leave for an IdP (no redirects, one deadline, size caps).
* ``discovery``: OpenID discovery with the exact issuer check, and JWKS key checks.
* ``protocol``: what RFC 7591/7592 exchanges share (``RegistrationError``, metadata rules).
* ``registration``: the DCR engine, ``DcrClient`` (register, read, update, delete).
* ``client_management``: RFC 7592 read, update and delete at a client configuration endpoint.
* ``adapters``: what Keycloak, Okta, Gluu and Curity do differently (docs/idp-vendors.md).
"""
