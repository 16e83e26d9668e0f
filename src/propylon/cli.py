"""The ``propylon`` command: ``up``, ``gateway``, ``dashboard``, ``migrate``, ``check-config``.

Settings are built here once, from flags over ``PROPYLON_*`` environment variables, and passed
down; nothing else reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
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

    Prints what could not be carried over. The same input always gives the same output.
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
            found = read_tyk(path)
            docs.apis += found.apis
            docs.policies += found.policies
            docs.unrecognised += found.unrecognised
    except TykFileError as exc:
        raise click.ClickException(str(exc)) from exc
    result = translate(docs.apis, docs.policies, issuers=mapping)
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
@click.option("--upstream-port", type=int, default=9000, show_default=True,
              help="Port of the demo echo upstream.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path(".propylon"), show_default=True)
def up(port: int, upstream_port: int, data_dir: Path) -> None:
    """Start Propylon with the embedded defaults and a seeded demo (no external services)."""
    import uvloop

    settings = GatewaySettings(port=port, data_dir=data_dir)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            runner.run(_up(settings, upstream_port))
        except OSError as exc:
            raise click.ClickException(
                f"{exc}. Is another program using the port? Choose others with --port / "
                "--upstream-port."
            ) from exc


async def _up(settings: GatewaySettings, upstream_port: int) -> None:
    from propylon.demo.seed import demo_config
    from propylon.demo.upstream import start_echo_upstream
    from propylon.gateway.service import GatewayService

    try:
        upstream = await start_echo_upstream("127.0.0.1", upstream_port)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on 127.0.0.1:{upstream_port}") from exc
    service = GatewayService(settings, demo_config(upstream_port))
    try:
        await service.start()
        base = f"http://{settings.host}:{service.port}"
        click.echo(
            f"\nPropylon is up.\n"
            f"  gateway        {base}\n"
            f"  demo upstream  http://127.0.0.1:{upstream_port}  (echoes what it receives)\n"
            f"  analytics      {settings.analytics_file}\n\n"
            f"Try it:\n"
            f"  curl -i {base}/demo/hello          # proxied, with RateLimit headers\n"
            f"  for i in $(seq 6); do curl -s -o /dev/null -w '%{{http_code}}\\n' "
            f"{base}/demo/hello; done   # the 6th gets 429\n\n"
            f"Press Ctrl-C to stop.\n"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await service.stop()
        upstream.close()
        with contextlib.suppress(Exception):
            await upstream.wait_closed()
        click.echo("Propylon stopped; analytics flushed.")


if __name__ == "__main__":
    main()
