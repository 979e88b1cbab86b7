"""`serve`, `worker` and `migrate`: the commands that run the service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import click
from pydantic import ValidationError

from genai_jobs import runtime
from genai_jobs.cli import options
from genai_jobs.cli.errors import CLIError
from genai_jobs.handlers import Registry, load_registry
from genai_jobs.settings import Settings
from genai_jobs.store import UnsupportedDatabaseURL


def build_settings(**flags: Any) -> Settings:
    """Settings from the environment, with the flags given on the command line on top."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f" {first['loc'][0]}" if first["loc"] else ""
        raise CLIError(f"invalid setting{where}: {first['msg']}") from exc


def _announce(line: str) -> None:
    click.echo(line, nl=True)


def _announcer(settings: Settings) -> runtime.Announce:
    """`_announce`, which first says so when the process made a new SQLite store (its
    first line comes once the store is open): started in the wrong directory, it would
    otherwise serve or work on an empty store in silence."""
    try:
        missing = options.missing_sqlite_file(settings.database_url)
    except UnsupportedDatabaseURL:
        missing = None  # `_run` reports it
    if missing is None:
        return _announce
    new_store = missing.absolute()

    def announce(line: str) -> None:
        nonlocal missing
        if missing is not None:
            missing = None
            click.echo(f"note: no store was at {new_store}: started a new, empty one "
                       "(--database-url or GENAI_JOBS_DATABASE_URL names an existing store)",
                       err=True)
        _announce(line)

    return announce


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def quiet_driver_logs() -> None:
    """One-shot commands report a failed connection in one line; the pool's own
    retries would print several more."""
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)


def _run(process: Callable[[Settings, Registry, runtime.Announce], Coroutine[Any, Any, None]],
         settings: Settings) -> None:
    try:
        registry = load_registry(settings.app)
        asyncio.run(process(settings, registry, _announcer(settings)))
    except (UnsupportedDatabaseURL, runtime.PortInUse) as exc:
        raise CLIError(str(exc)) from exc
    except ValueError as exc:  # a bad --app
        raise CLIError(str(exc)) from exc


@click.command()
@click.option("--host", envvar="GENAI_JOBS_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="GENAI_JOBS_PORT", type=int, default=8080, show_default=True)
@click.option("--workers", envvar="GENAI_JOBS_WORKERS", type=click.IntRange(min=0), default=1,
              show_default=True, help="In-process workers; 0 serves the API only.")
@click.option("--concurrency", envvar="GENAI_JOBS_CONCURRENCY", type=click.IntRange(min=1),
              default=None, help="Jobs each worker runs at once (default 4).")
@click.option("--log-level", envvar="GENAI_JOBS_LOG_LEVEL", default="info", show_default=True)
@options.database_url
@options.apps
def serve(host: str, port: int, workers: int, concurrency: int | None, log_level: str,
          database_url: str, apps: tuple[str, ...]) -> None:
    """Run the API and in-process workers on one store (the one-command start)."""
    _configure_logging(log_level)
    settings = build_settings(host=host, port=port, workers=workers, concurrency=concurrency,
                              database_url=database_url, app=list(apps))
    _run(runtime.serve, settings)


@click.command()
@click.option("--concurrency", envvar="GENAI_JOBS_CONCURRENCY", type=click.IntRange(min=1),
              default=None, help="Jobs this worker runs at once (default 4).")
@click.option("--log-level", envvar="GENAI_JOBS_LOG_LEVEL", default="info", show_default=True)
@click.option("--metrics-port", envvar="GENAI_JOBS_METRICS_PORT", type=int, default=None,
              help="Serve Prometheus metrics on this port (on --host).")
@click.option("--host", envvar="GENAI_JOBS_HOST", default="127.0.0.1", show_default=True,
              help="Where --metrics-port listens.")
@options.database_url
@options.apps
def worker(concurrency: int | None, log_level: str, metrics_port: int | None, host: str,
           database_url: str, apps: tuple[str, ...]) -> None:
    """Run workers only, against the same store as the API."""
    _configure_logging(log_level)
    settings = build_settings(concurrency=concurrency, database_url=database_url,
                              app=list(apps), metrics_port=metrics_port, host=host)
    _run(runtime.work, settings)


@click.command()
@options.database_url
def migrate(database_url: str) -> None:
    """Apply pending schema migrations and exit."""
    quiet_driver_logs()
    settings = build_settings(database_url=database_url)
    applied: list[int] = []

    async def run(settings: Settings, registry: Registry, announce: runtime.Announce) -> None:
        applied.extend(await runtime.migrate(settings))

    _run(run, settings)
    click.echo(f"applied migrations {applied}" if applied else "the store is up to date")


def register(group: click.Group) -> None:
    for command in (serve, worker, migrate):
        group.add_command(command)
