"""The ``propylon`` command: ``up``, ``gateway``, ``dashboard``, ``idp``, ``migrate``, ``check-config``.

Settings are built here once, from flags over ``PROPYLON_*`` environment variables, and passed
down; nothing else reads the environment.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click
import pydantic

from propylon import __version__
from propylon.domain.config import ConfigError
from propylon.logs import configure_logging
from propylon.settings import DashboardSettings, GatewaySettings


def _settings(**flags: Any) -> GatewaySettings:
    """Environment first, then every flag the user actually gave."""
    given = {k: v for k, v in flags.items() if v is not None}
    return GatewaySettings(**given)


@click.group()
@click.version_option(__version__, prog_name="propylon")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """Propylon: API gateway, developer portal and Dynamic Client Registration."""
    configure_logging(log_level)
    ctx.obj = {"log_level": log_level}


@main.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Gateway configuration (YAML or JSON). Env: PROPYLON_CONFIG_FILE.")
@click.option("--host", help="Listen address (default 127.0.0.1). Env: PROPYLON_HOST.")
@click.option("--port", type=int, help="Listen port (default 8080). Env: PROPYLON_PORT.")
@click.option("--workers", type=int, help="Processes sharing the port (SO_REUSEPORT).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="State directory (default ./.propylon). Env: PROPYLON_DATA_DIR.")
@click.option("--dashboard", "dashboard_url", metavar="URL",
              help="Dashboard mode: take the signed configuration from this dashboard. The node "
                   "secret comes from PROPYLON_NODE_SECRET only, never a flag, so that it does "
                   "not show in the process list. Env: PROPYLON_DASHBOARD_URL.")
@click.pass_context
def gateway(ctx: click.Context, /, **flags: Any) -> None:
    """Run the gateway from a configuration file (DB-less mode) or a dashboard."""
    from propylon.gateway.config_source import load_config_file
    from propylon.gateway.dashboard_source import DashboardUnavailable
    from propylon.gateway.workers import run_workers

    try:
        settings = _settings(**flags)
    except pydantic.ValidationError as exc:
        raise _usage_error(exc) from exc
    if settings.config_file is None and settings.dashboard_url is None:
        raise click.UsageError(
            "--config FILE or --dashboard URL (or PROPYLON_CONFIG_FILE / PROPYLON_DASHBOARD_URL) "
            "is required"
        )
    if settings.config_file is not None:
        try:
            load_config_file(settings.config_file)
        except ConfigError as exc:
            raise click.ClickException(f"{settings.config_file}: {exc}") from exc
    try:
        sys.exit(run_workers(settings, log_level=ctx.obj["log_level"]))
    except (OSError, ValueError, DashboardUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc


def _usage_error(exc: pydantic.ValidationError) -> click.UsageError:
    """Settings problems as a usage error: field and message only, since the settings models hide
    input values (they may be secrets)."""
    return click.UsageError("; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: "
        f"{str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors()
    ))


def _dashboard_settings(**flags: Any) -> DashboardSettings:
    """Dashboard settings: environment first, then every flag given; a bad value is a usage error
    naming the field only (values may be secrets)."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return DashboardSettings(**given)
    except pydantic.ValidationError as exc:
        raise _usage_error(exc) from exc


@main.command()
@click.option("--host", "dashboard_host",
              help="Listen address (default 127.0.0.1). Env: PROPYLON_DASHBOARD_HOST.")
@click.option("--port", "dashboard_port", type=int,
              help="Listen port (default 3000; 0 picks a free one). Env: PROPYLON_DASHBOARD_PORT.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Database and key file directory (default ./.propylon). Env: PROPYLON_DATA_DIR.")
def dashboard(**flags: Any) -> None:
    """Run the dashboard: the admin API under /api/v1 and the gateways' sync endpoints.

    On first start it creates the admin user `admin` with PROPYLON_ADMIN_PASSWORD, or with a
    one-time password printed once on standard output.
    """
    from propylon.dashboard.service import run_dashboard

    sys.exit(run_dashboard(_dashboard_settings(**flags)))


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Directory of the default SQLite database. Env: PROPYLON_DATA_DIR.")
def migrate(**flags: Any) -> None:
    """Bring the control-plane database (PROPYLON_DATABASE_URL) to the newest schema and exit."""
    from propylon.dashboard.service import StartupError, migrate_database
    from propylon.storage.sql.database import redact

    settings = _dashboard_settings(**flags)
    try:
        revision = asyncio.run(migrate_database(settings))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{redact(settings.effective_database_url)}: at schema revision {revision}")


def _provider_settings(**flags: Any) -> Any:
    """Embedded IdP settings: PROPYLON_IDP_* environment first, then every flag given."""
    from propylon.provider.settings import ProviderSettings

    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return ProviderSettings(**given)
    except pydantic.ValidationError as exc:
        raise _usage_error(exc) from exc


_IDP_DATA_DIR = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False),
    help="Directory of the IdP database and signing keys (default ./.propylon). "
         "Env: PROPYLON_IDP_DATA_DIR.")


@main.group(invoke_without_command=True)
@click.option("--host", help="Listen address (default 127.0.0.1). Env: PROPYLON_IDP_HOST.")
@click.option("--port", type=int,
              help="Listen port (default 9400; 0 picks a free one). Env: PROPYLON_IDP_PORT.")
@click.option("--issuer", help="Issuer URL (default http://127.0.0.1:PORT). Env: PROPYLON_IDP_ISSUER.")
@_IDP_DATA_DIR
@click.pass_context
def idp(ctx: click.Context, /, **flags: Any) -> None:
    """The embedded OpenID provider: without a subcommand, serve it.

    It offers discovery, JWKS, RFC 7591/7592 registration with initial access tokens, the
    client_credentials and authorization_code + PKCE grants with RFC 9068 JWT access tokens,
    introspection and revocation. See docs/embedded-idp.md.
    """
    ctx.obj = {**(ctx.obj or {}), "idp_flags": flags}
    if ctx.invoked_subcommand is None:
        from propylon.provider.service import run_provider

        sys.exit(run_provider(_provider_settings(**flags)))


def _idp_subcommand_settings(ctx: click.Context, data_dir: Path | None) -> Any:
    flags = dict(ctx.obj.get("idp_flags", {}))
    if data_dir is not None:
        flags["data_dir"] = data_dir
    return _provider_settings(**flags)


def _idp_failure(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@idp.command("create-iat")
@click.option("--expires-in", type=click.IntRange(min=60), metavar="SECONDS",
              help="Lifetime (default PROPYLON_IDP_INITIAL_ACCESS_TOKEN_LIFETIME, one day).")
@click.option("--label", default="created with propylon idp create-iat", show_default=True,
              help="What the token is for (stored with it).")
@_IDP_DATA_DIR
@click.pass_context
def idp_create_iat(ctx: click.Context, expires_in: int | None, label: str, data_dir: Path | None) -> None:
    """Create an initial access token for client registration and print it (shown once)."""
    from propylon.provider.service import StartupError, create_initial_access_token

    settings = _idp_subcommand_settings(ctx, data_dir)
    try:
        token = create_initial_access_token(settings, expires_in=expires_in, label=label)
    except StartupError as exc:
        raise _idp_failure(exc) from exc
    click.echo(token)


@idp.command("add-user")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (one line) instead of prompting.")
@_IDP_DATA_DIR
@click.pass_context
def idp_add_user(ctx: click.Context, username: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Add a user who can sign in on the IdP's login page (authorization code flow)."""
    from propylon.provider.service import StartupError, open_store
    from propylon.provider.store import UserExists
    from propylon.web.credentials import password_problem

    if not username.strip() or len(username) > 200 or "\x00" in username:
        raise click.BadParameter("must be 1 to 200 characters", param_hint="USERNAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem is not None:
        raise click.ClickException(f"the password {problem}")
    settings = _idp_subcommand_settings(ctx, data_dir)
    try:
        store = open_store(settings)
    except StartupError as exc:
        raise _idp_failure(exc) from exc
    try:
        user_id = store.add_user(username, password)
    except UserExists as exc:
        raise _idp_failure(exc) from exc
    finally:
        store.close()
    click.echo(f"added user {username} (sub {user_id})")


@idp.command("rotate-keys")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]),
              help="Algorithm of the new key (default PROPYLON_IDP_SIGNING_ALG, RS256).")
@_IDP_DATA_DIR
@click.pass_context
def idp_rotate_keys(ctx: click.Context, alg: str | None, data_dir: Path | None) -> None:
    """Add a new signing key; it signs new tokens at once (a running IdP picks it up), the old
    ones stay published in the JWKS until retire-keys removes them."""
    from propylon.provider.service import key_ring

    settings = _idp_subcommand_settings(ctx, data_dir)
    key = key_ring(settings).add(alg or settings.signing_alg)
    click.echo(f"new signing key {key.kid} ({key.alg})")


@idp.command("retire-keys")
@click.option("--older-than", required=True, metavar="DURATION",
              help="Remove keys created longer ago than this: seconds, or a number with s/m/h/d "
                   "(e.g. 2h). Choose more than the token lifetime, or tokens still in use fail.")
@_IDP_DATA_DIR
@click.pass_context
def idp_retire_keys(ctx: click.Context, older_than: str, data_dir: Path | None) -> None:
    """Remove old signing keys from the JWKS (never the active one)."""
    from propylon.provider.keys import KeyFileError
    from propylon.provider.service import key_ring

    seconds = _duration(older_than)
    settings = _idp_subcommand_settings(ctx, data_dir)
    try:
        removed = key_ring(settings).retire(seconds)
    except KeyFileError as exc:
        raise _idp_failure(exc) from exc
    click.echo(f"retired {len(removed)} key(s)" + (f": {', '.join(removed)}" if removed else ""))


@idp.command("list-keys")
@_IDP_DATA_DIR
@click.pass_context
def idp_list_keys(ctx: click.Context, data_dir: Path | None) -> None:
    """List the signing keys (kid, algorithm, age, which one is active)."""
    import time

    from propylon.provider.keys import KeyFileError
    from propylon.provider.service import key_ring

    settings = _idp_subcommand_settings(ctx, data_dir)
    ring = key_ring(settings)
    try:
        keys, active = ring.keys(), ring.active()
    except KeyFileError as exc:
        raise _idp_failure(exc) from exc
    for key in keys:
        marker = " (active)" if active is not None and key.kid == active.kid else ""
        click.echo(f"{key.kid}  {key.alg}  {int(time.time()) - key.created_at}s old{marker}")


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    factor = units.get(value[-1:])
    number = value[:-1] if factor is not None else value
    if not number.isdigit():
        raise click.BadParameter(f"{text!r}: expected seconds or a number with s/m/h/d",
                                 param_hint="--older-than")
    return int(number) * (factor or 1)


@main.command("check-config")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def check_config(path: Path) -> None:
    """Validate a gateway configuration file and list every problem."""
    from propylon.gateway.config_source import load_config_file

    try:
        config = load_config_file(path)
    except ConfigError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    click.echo(f"{path}: OK ({len(config.apis)} APIs, {len(config.policies)} policies, "
               f"{len(config.identity_providers)} identity providers)")


@main.command("import-tyk")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the gateway configuration here (YAML) instead of standard output.")
@click.option("--issuer", "issuers", multiple=True, metavar="JWKS_URL=ISSUER",
              help="The issuer of the tokens whose keys are at JWKS_URL (Tyk has no issuer "
                   "setting; Propylon checks iss exactly). Repeatable.")
@click.option("--dashboard", metavar="URL",
              help="Import into the dashboard at URL (admin token from PROPYLON_ADMIN_TOKEN) "
                   "instead of writing a configuration file.")
@click.option("--dry-run", is_flag=True, help="With --dashboard: report what would change, write nothing.")
def import_tyk(paths: tuple[Path, ...], out: Path | None, issuers: tuple[str, ...],
               dashboard: str | None, dry_run: bool) -> None:
    """Translate Tyk Classic API definitions and policies into a gateway configuration, or import
    them into a dashboard's database (idempotent: importing again changes nothing).

    A Tyk Dashboard configuration (tyk_analytics.conf) among PATHS gives the portal's
    oauth_redirect_uri_separator, which only --dashboard imports. Prints what could not be carried
    over. The same input always gives the same output.
    """
    import yaml

    from propylon.domain.config import parse_config
    from propylon.tyk.files import TykDocuments, TykFileError, read_tyk
    from propylon.tyk.translate import translate

    mapping: dict[str, str] = {}
    for item in issuers:
        jwks, sep, issuer = item.partition("=")
        if not sep or not jwks or not issuer:
            raise click.BadParameter(f"{item!r}: expected JWKS_URL=ISSUER", param_hint="--issuer")
        mapping[jwks] = issuer
    if dashboard is not None:
        from propylon.dashboard.import_client import import_into_dashboard

        sys.exit(import_into_dashboard(dashboard, paths, mapping, dry_run=dry_run))
    docs = TykDocuments()
    try:
        for path in paths:
            docs.add(read_tyk(path))
    except TykFileError as exc:
        raise click.ClickException(str(exc)) from exc
    result = translate(docs.apis, docs.policies, issuers=mapping, dashboard_configs=docs.dashboard_configs)
    # Portal settings live in the dashboard's database, not in a gateway configuration file.
    for key, value in result.portal_settings.items():
        result.report.note("Tyk Dashboard configuration", f"{key} {value!r} is a portal setting, not "
                           "applicable to a gateway configuration file; import with --dashboard to set it")
    for location, message in result.problems:
        result.report.note(location, f"not applicable here, and --dashboard would refuse it: {message}")
    try:
        parse_config(result.config)
    except ConfigError as exc:
        raise click.ClickException(f"the translated configuration is not valid: {exc}") from exc
    text = yaml.safe_dump(result.config, sort_keys=False, default_flow_style=False)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
    click.echo(f"imported {len(result.config['apis'])} APIs, {len(result.config['policies'])} "
               f"policies, {len(result.config['identity_providers'])} identity providers", err=True)
    for where in docs.unrecognised:
        click.echo(f"  not recognised: {where}", err=True)
    for line in result.report.skipped:
        click.echo(f"  skipped: {line}", err=True)
    for line in result.report.notes:
        click.echo(f"  note: {line}", err=True)


@main.command()
@click.option("--port", type=int, default=8080, show_default=True, help="Gateway port.")
@click.option("--dashboard-port", type=int, default=3000, show_default=True,
              help="Dashboard, admin API and developer portal port.")
@click.option("--idp-port", type=int, default=9400, show_default=True,
              help="Embedded OpenID provider port.")
@click.option("--upstream-port", type=int, default=9000, show_default=True,
              help="Port of the demo echo upstream.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path(".propylon"), show_default=True,
              help="Where everything is kept (SQLite databases, keys, logs); a restart keeps it.")
def up(port: int, dashboard_port: int, idp_port: int, upstream_port: int, data_dir: Path) -> None:
    """Start gateway, dashboard + portal and the embedded OpenID provider with a seeded demo.

    No external service is needed: SQLite and in-memory counters in the data directory. Ctrl-C
    stops everything cleanly.
    """
    from propylon.stack.supervisor import StackError
    from propylon.stack.up import UpOptions, run_up

    options = UpOptions(data_dir=data_dir, gateway_port=port, dashboard_port=dashboard_port,
                        idp_port=idp_port, upstream_port=upstream_port)
    try:
        status = asyncio.run(run_up(options, sys.stdout, _embedded_iat))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(status)


def _embedded_iat(idp_data_dir: Path) -> str:
    """An initial access token at the embedded IdP whose data is in ``idp_data_dir``."""
    from propylon.provider.service import create_initial_access_token
    from propylon.provider.settings import ProviderSettings

    # Opening the IdP's database runs its migrations; their INFO lines would bury up's banner.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return create_initial_access_token(ProviderSettings(data_dir=idp_data_dir), expires_in=3600,
                                       label="propylon up: demo seed")


@main.command()
@click.option("--dashboard", "dashboard_url", default="http://127.0.0.1:3000", show_default=True,
              help="Base URL of the dashboard (portal) of a running `propylon up`.")
@click.option("--gateway", "gateway_url", default="http://127.0.0.1:8080", show_default=True,
              help="Base URL of its gateway.")
def demo(dashboard_url: str, gateway_url: str) -> None:
    """Run the demo flow headlessly against a running `propylon up`, printing each step.

    Sign up, register an OAuth client (DCR), get a token, call the API, hit the rate limit, delete
    the client, see the token refused. Exit status 0 only if every step behaved as expected.
    """
    from propylon.demo.flow import run_demo

    sys.exit(asyncio.run(run_demo(dashboard_url, gateway_url, sys.stdout)))


if __name__ == "__main__":
    main()
