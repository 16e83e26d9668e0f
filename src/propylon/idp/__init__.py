"""Outbound adapters to identity providers: Propylon acting as an OAuth client of an IdP.

``client_management`` reads and deletes a registered client through its RFC 7592 client
configuration endpoint. Dynamic registration (RFC 7591), updates and vendor adapters come next.
"""
