"""The embedded OpenID provider (``propylon idp``): Propylon as the identity provider, for local
use and demos, built on Authlib's server components.

Entry points: :func:`~propylon.provider.service.build_provider_app`,
:func:`~propylon.provider.service.serve_provider`,
:func:`~propylon.provider.service.create_initial_access_token` and
:class:`~propylon.provider.settings.ProviderSettings`. See ``docs/embedded-idp.md``.
"""
