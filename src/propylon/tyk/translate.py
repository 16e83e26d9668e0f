"""Translate Tyk Classic API definitions and policies into a Propylon gateway configuration.

Pure: it takes decoded JSON documents and returns a configuration mapping plus a report; reading
files and writing the result is the caller's job (``propylon import-tyk``). The output is
deterministic (sorted by id), so importing the same files twice gives the same configuration.

What maps (Tyk field → Propylon):

* ``api_id``/``name``/``proxy.listen_path``/``proxy.target_url``/``proxy.strip_listen_path`` → an API;
* ``use_keyless`` → keyless auth; ``enable_jwt`` → JWT auth with an identity provider derived from
  ``jwt_source`` (a JWKS URL, raw or base64), ``jwt_signing_method`` (rsa → RS*/PS*, ecdsa → ES*),
  ``jwt_identity_base_field``, ``jwt_client_base_field``, ``jwt_policy_field_name``,
  ``jwt_default_policies``, ``jwt_scope_claim_name``, ``jwt_scope_to_policy_mapping`` and the
  ``jwt_*_validation_skew`` fields (their maximum, at most 60 s, becomes the leeway);
* policy ``rate``/``per``, ``quota_max``/``quota_renewal_rate`` (-1 = unlimited) and the APIs of
  ``access_rights``.

Everything else is reported, never silently dropped: an API whose auth cannot be expressed (Tyk
auth tokens, HMAC JWTs, static PEM keys) is skipped with the reason; per-path ``allowed_urls`` of a
policy cannot be translated from Tyk's regular expressions, so that API is left out of the policy
(deny, not allow); unsupported features (custom middleware, event handlers, versioning, key
expiry...) are listed per object.

Tyk has no issuer setting, but Propylon checks ``iss`` exactly, so the issuer is taken from the
caller's mapping (JWKS URL → issuer) or inferred from the JWKS URL's shape for the vendors whose
layout is known (Keycloak, Okta, Gluu, Curity); an inference is reported so an operator confirms it.

A Tyk Dashboard configuration (``tyk_analytics.conf``) gives the portal settings'
``oauth_redirect_uri_separator`` (``dashboard_config.py``); a bad separator is a problem that forbids
the import rather than a skip, because the portal would otherwise split redirect URIs wrongly.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from propylon.tyk.dashboard_config import dashboard_settings

_SIGNING_METHODS = {
    "rsa": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    "ecdsa": ["ES256", "ES384", "ES512"],
}
# API-definition fields that are understood (mapped, or meaningless here).
_API_FIELDS = {
    "api_id", "name", "org_id", "proxy", "use_keyless", "auth", "definition", "version_data",
    "enable_jwt", "jwt_signing_method", "jwt_source", "jwt_identity_base_field",
    "jwt_client_base_field", "jwt_policy_field_name", "jwt_default_policies",
    "jwt_scope_claim_name", "jwt_scope_to_policy_mapping", "jwt_issued_at_validation_skew",
    "jwt_expires_at_validation_skew", "jwt_not_before_validation_skew", "active", "id", "_id",
    "slug", "use_standard_auth", "enable_batch_request_support",
}
_POLICY_FIELDS = {
    "id", "_id", "name", "rate", "per", "quota_max", "quota_renewal_rate", "access_rights",
    "org_id", "active", "hmac_enabled", "is_inactive", "tags", "key_expires_in",
}
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
# JWKS URL layouts of the vendors in IDP-VENDORS.md → the issuer they publish.
_ISSUER_PATTERNS = [
    (re.compile(r"^(?P<iss>https?://.+/realms/[^/]+)/protocol/openid-connect/certs$"), "Keycloak"),
    (re.compile(r"^(?P<iss>https?://[^/]+/oauth2/[^/]+)/v1/keys$"), "Okta"),
    (re.compile(r"^(?P<iss>https?://[^/]+)/oxauth/restv1/jwks$"), "Gluu"),
    (re.compile(r"^(?P<iss>https?://[^/]+/oauth/v2/[^/]+)/jwks$"), "Curity"),
]


@dataclass
class ImportReport:
    """What the import did not carry over, per object, in words an operator can act on."""

    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def note(self, where: str, message: str) -> None:
        """Record something imported with a caveat."""
        self.notes.append(f"{where}: {message}")

    def skip(self, where: str, message: str) -> None:
        """Record something not imported at all."""
        self.skipped.append(f"{where}: {message}")


@dataclass
class TykImport:
    """A gateway configuration mapping (for ``parse_config``), the report, per-policy fields only
    the dashboard keeps (``name``, ``key_expires_in_seconds``) by policy id, the portal-settings
    fields a Dashboard configuration gives, and the problems that forbid importing those
    (``(location, message)``)."""

    config: dict[str, Any]
    report: ImportReport
    policy_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_settings: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


def translate(
    apis: Iterable[Mapping[str, Any]],
    policies: Iterable[Mapping[str, Any]],
    *,
    issuers: Mapping[str, str] | None = None,
    dashboard_configs: Iterable[tuple[str, Mapping[str, Any]]] = (),
) -> TykImport:
    """Translate Tyk API definitions and policies; ``issuers`` maps JWKS URLs to issuers;
    ``dashboard_configs`` are Tyk Dashboard configurations, each with where it was found."""
    report = ImportReport()
    idps: dict[str, dict[str, Any]] = {}
    api_ids: dict[str, str] = {}  # Tyk api_id → Propylon id
    out_apis = []
    for raw in sorted(apis, key=lambda a: str(a.get("api_id", ""))):
        api = _api(raw, idps, issuers or {}, report)
        if api is not None:
            api_ids[str(raw.get("api_id"))] = api["id"]
            out_apis.append(api)
    out_policies = []
    extras: dict[str, dict[str, Any]] = {}
    for pid, raw in sorted(((_policy_id(p), p) for p in policies), key=lambda x: x[0]):
        out_policies.append(_policy(pid, raw, api_ids, report))
        extras[pid] = _policy_extras(raw)
    config = {
        "identity_providers": [idps[k] for k in sorted(idps)],
        "apis": out_apis,
        "policies": out_policies,
    }
    _drop_dangling_policy_references(config, report)
    portal = dashboard_settings(dashboard_configs, report)
    return TykImport(config, report, extras, portal.portal_settings, portal.problems)


def _policy_extras(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The policy fields a gateway does not use but the dashboard keeps."""
    extras: dict[str, Any] = {}
    if isinstance(raw.get("name"), str) and raw["name"].strip():
        extras["name"] = raw["name"].strip()
    expires = raw.get("key_expires_in")
    # Tyk: 0 or a negative value means keys never expire.
    if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0:
        extras["key_expires_in_seconds"] = int(expires)
    return extras


def _safe_id(value: object, fallback: str) -> str:
    text = _ID_UNSAFE.sub("-", str(value or "")).strip("-.:")
    return (text or fallback)[:128]


def _api(
    raw: Mapping[str, Any],
    idps: dict[str, dict[str, Any]],
    issuers: Mapping[str, str],
    report: ImportReport,
) -> dict[str, Any] | None:
    api_id = _safe_id(raw.get("api_id"), "api")
    where = f"API {api_id!r} ({raw.get('name', '')})"
    proxy = raw.get("proxy") or {}
    listen_path = str(proxy.get("listen_path") or "")
    target = str(proxy.get("target_url") or "")
    if not listen_path.startswith("/") or not target:
        report.skip(where, "no proxy.listen_path or proxy.target_url")
        return None
    for name in sorted(set(raw) - _API_FIELDS):
        report.note(where, f"{name} is not supported and was not imported")
    _note_versions(raw.get("version_data"), where, report)
    if raw.get("enable_jwt"):
        auth = _jwt_auth(raw, idps, issuers, where, report)
        if auth is None:
            return None
    elif raw.get("use_keyless"):
        auth = {"type": "keyless"}
    else:
        report.skip(where, "uses Tyk auth tokens (API keys), which Propylon does not support; "
                           "move its clients to OAuth (JWT) first")
        return None
    return {
        "id": api_id,
        "name": str(raw.get("name") or api_id),
        "listen_path": listen_path if listen_path.endswith("/") else listen_path + "/",
        "upstream": target,
        "strip_listen_path": bool(proxy.get("strip_listen_path", False)),
        "auth": auth,
    }


def _note_versions(version_data: Any, where: str, report: ImportReport) -> None:
    if not isinstance(version_data, Mapping):
        return
    versions = version_data.get("versions") or {}
    if not version_data.get("not_versioned", True) or len(versions) > 1:
        report.note(where, "API versions are not supported; all versions share one definition")
    for name, version in versions.items():
        paths: Any = {}
        if isinstance(version, Mapping):
            paths = version.get("extended_paths") or version.get("paths") or {}
        used = sorted(k for k, v in paths.items() if v) if isinstance(paths, Mapping) else []
        if used:
            report.note(where, f"version {name!r}: path rules {used} are not imported; "
                               "express them as policy access rights")


def _jwt_auth(
    raw: Mapping[str, Any],
    idps: dict[str, dict[str, Any]],
    issuers: Mapping[str, str],
    where: str,
    report: ImportReport,
) -> dict[str, Any] | None:
    method = str(raw.get("jwt_signing_method") or "").lower()
    if method not in _SIGNING_METHODS:
        report.skip(where, f"jwt_signing_method {method or '(none)'!r} is not allowed: Propylon "
                           "accepts asymmetric keys published in a JWKS only (rsa, ecdsa)")
        return None
    jwks_uri = _jwks_url(raw.get("jwt_source"))
    if jwks_uri is None:
        report.skip(where, "jwt_source is not a JWKS URL (static keys are not supported); "
                           "point it at the IdP's JWKS")
        return None
    issuer = issuers.get(jwks_uri)
    if issuer is None:
        issuer, vendor = _infer_issuer(jwks_uri)
        if issuer is None:
            report.skip(where, f"no issuer for {jwks_uri}: pass --issuer {jwks_uri}=<issuer>")
            return None
        report.note(where, f"issuer {issuer} inferred from the {vendor} JWKS URL; confirm it")
    idp_id = _safe_id(urlsplit(issuer).netloc + urlsplit(issuer).path, "idp")
    idp = idps.setdefault(idp_id, {
        "id": idp_id, "issuer": issuer, "jwks_uri": jwks_uri, "algorithms": [],
    })
    for alg in _SIGNING_METHODS[method]:
        if alg not in idp["algorithms"]:
            idp["algorithms"].append(alg)
    skews = [raw.get(f"jwt_{k}_validation_skew") for k in ("issued_at", "expires_at", "not_before")]
    leeway = max([int(s) for s in skews if isinstance(s, int | float) and s > 0] or [0])
    if leeway > 60:
        report.note(where, f"validation skew {leeway}s reduced to 60s (the most Propylon allows)")
        leeway = 60
    idp["leeway_seconds"] = max(idp.get("leeway_seconds", 0), leeway)
    auth: dict[str, Any] = {"type": "jwt", "identity_provider": idp_id}
    identity = raw.get("jwt_identity_base_field")
    if identity:
        auth["identity_claim"] = str(identity)
    client = raw.get("jwt_client_base_field")
    if client:
        # Tyk names one claim; the vendor defaults stay behind it as fallbacks.
        auth["client_claims"] = list(dict.fromkeys([str(client), "client_id", "azp", "cid", "clientId"]))
    auth["policy_claim"] = str(raw.get("jwt_policy_field_name") or "pol")
    if raw.get("jwt_scope_claim_name"):
        auth["scope_claim"] = str(raw["jwt_scope_claim_name"])
    mapping = raw.get("jwt_scope_to_policy_mapping") or {}
    if mapping:
        auth["scope_policies"] = {str(k): _safe_id(v, "policy") for k, v in sorted(mapping.items())}
    defaults = raw.get("jwt_default_policies") or []
    if defaults:
        auth["default_policies"] = [_safe_id(p, "policy") for p in defaults]
    return auth


def _jwks_url(source: Any) -> str | None:
    if not isinstance(source, str) or not source.strip():
        return None
    text = source.strip()
    if not text.startswith(("http://", "https://")):
        try:
            text = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    return text if text.startswith(("http://", "https://")) else None


def _infer_issuer(jwks_uri: str) -> tuple[str | None, str]:
    for pattern, vendor in _ISSUER_PATTERNS:
        match = pattern.match(jwks_uri)
        if match:
            return match.group("iss"), vendor
    return None, ""


def _policy_id(raw: Mapping[str, Any]) -> str:
    return _safe_id(raw.get("id") or raw.get("_id") or raw.get("name"), "policy")


def _policy(
    pid: str, raw: Mapping[str, Any], api_ids: Mapping[str, str], report: ImportReport
) -> dict[str, Any]:
    where = f"policy {pid!r}"
    for name in sorted(set(raw) - _POLICY_FIELDS):
        report.note(where, f"{name} is not supported and was not imported")
    if raw.get("key_expires_in"):
        report.note(where, "key_expires_in is kept by the dashboard import (as the policy's "
                           "key_expires_in_seconds); at the gateway a JWT's own exp decides")
    policy: dict[str, Any] = {"id": pid}
    rate, per = raw.get("rate"), raw.get("per")
    if isinstance(rate, int | float) and isinstance(per, int | float) and rate > 0 and per > 0:
        policy["rate"] = {"requests": int(rate), "per_seconds": float(per)}
    quota, renewal = raw.get("quota_max"), raw.get("quota_renewal_rate")
    if isinstance(quota, int | float) and quota >= 0:
        if isinstance(renewal, int | float) and renewal > 0:
            policy["quota"] = {"max": int(quota), "renewal_seconds": int(renewal)}
        else:
            report.note(where, "quota_max without a positive quota_renewal_rate was not imported")
    rights: dict[str, Any] = {}
    for tyk_api, right in sorted((raw.get("access_rights") or {}).items()):
        api_id = api_ids.get(str(tyk_api))
        if api_id is None:
            report.note(where, f"access to API {tyk_api!r} dropped: that API was not imported")
            continue
        if isinstance(right, Mapping) and right.get("allowed_urls"):
            # Tyk's allowed_urls are regular expressions; a wrong translation could widen access.
            report.note(where, f"API {api_id!r} left out: its allowed_urls (regular expressions) "
                               "need rewriting as path patterns")
            continue
        rights[api_id] = {}
    policy["access_rights"] = rights
    return policy


def _drop_dangling_policy_references(config: dict[str, Any], report: ImportReport) -> None:
    known = {p["id"] for p in config["policies"]}
    for api in config["apis"]:
        auth = api["auth"]
        where = f"API {api['id']!r}"
        if "default_policies" in auth:
            missing = [p for p in auth["default_policies"] if p not in known]
            if missing:
                report.note(where, f"default policies {missing} were not among the imported policies")
                auth["default_policies"] = [p for p in auth["default_policies"] if p in known]
        if "scope_policies" in auth:
            for scope, pol in list(auth["scope_policies"].items()):
                if pol not in known:
                    report.note(where, f"scope {scope!r} maps to unknown policy {pol!r}; dropped")
                    del auth["scope_policies"][scope]
