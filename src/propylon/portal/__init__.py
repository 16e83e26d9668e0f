"""The developer portal: the registration saga of OAuth clients (``registration``) and the
developer JSON API under ``/portal/api/v1`` (``api``), served by the dashboard application.

Developers authenticate with their own API tokens (``ppd_…``), never with admin credentials; what
they see of a failure at the identity provider is a clear, generic message, while the IdP's own
error goes to the client record, where admins read it.
"""
