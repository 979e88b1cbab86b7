"""`token create|list|revoke`: talk to the store directly, no server needed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import UUID

import click
from rich.console import Console
from rich.table import Table

from genai_jobs.cli import options
from genai_jobs.cli.errors import CLIError
from genai_jobs.cli.service import build_settings, quiet_driver_logs
from genai_jobs.domain import TokenNotFound, TokenRecord
from genai_jobs.runtime import NotAStore, opened_store
from genai_jobs.store import Store, UnsupportedDatabaseURL
from genai_jobs.tokens import hash_secret, new_secret, tenant_name

T = TypeVar("T")


def with_existing_store(database_url: str, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run `action` on the store, which must exist: a token made in a new, empty SQLite
    file (a relative path run from another directory) is one no server would accept."""
    quiet_driver_logs()
    settings = build_settings(database_url=database_url)
    try:
        missing = options.missing_sqlite_file(settings.database_url)
    except UnsupportedDatabaseURL as exc:
        raise CLIError(str(exc)) from exc
    if missing is not None:
        raise CLIError(options.no_store_here(settings.database_url, missing))

    async def run() -> T:
        async with opened_store(settings, only_existing=True) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except UnsupportedDatabaseURL as exc:
        raise CLIError(str(exc)) from exc
    except NotAStore as exc:
        raise CLIError(f"no genai-jobs store in {exc.location}: point --database-url or "
                       "GENAI_JOBS_DATABASE_URL at the server's store, or create this one "
                       "with `genai-jobs migrate`") from exc


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command()
@click.option("--tenant", required=True, envvar="GENAI_JOBS_TENANT",
              help="The tenant the token acts for.")
@click.option("--admin", is_flag=True, envvar="GENAI_JOBS_ADMIN",
              help="May read, list and abort every tenant's jobs.")
@options.database_url
def create(tenant: str, admin: bool, database_url: str) -> None:
    """Create a token; it is printed once, alone on the last line."""
    try:
        name = tenant_name(tenant)
    except ValueError as exc:
        raise CLIError(f"--tenant: {exc}") from exc
    secret = new_secret()
    record = with_existing_store(
        database_url, lambda store: store.create_token(name, admin, hash_secret(secret)))
    kind = "admin token" if admin else "token"
    click.echo(f"Created {kind} {record.id} for tenant {record.tenant!r}; it is shown only once:")
    click.echo(secret)


@token.command("list")
@options.database_url
def list_tokens(database_url: str) -> None:
    """List tokens (never the secrets)."""
    records = with_existing_store(database_url, lambda store: store.list_tokens())
    table = Table("id", "tenant", "admin", "created", "last used", "revoked")
    for record in records:
        table.add_row(*_row(record))
    # Off a terminal, wide enough that ids are never cut (they are what `revoke` takes).
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _row(record: TokenRecord) -> list[str]:
    def when(moment: object) -> str:
        return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"

    return [str(record.id), record.tenant, "yes" if record.is_admin else "no",
            when(record.created_at), when(record.last_used_at), when(record.revoked_at)]


@token.command()
@click.argument("token_id")
@options.database_url
def revoke(token_id: str, database_url: str) -> None:
    """Revoke a token by its id; requests with it are refused from now on."""
    try:
        parsed = UUID(token_id)
    except ValueError as exc:
        raise CLIError(f"{token_id!r} is not a token id (see `genai-jobs token list`)") from exc
    try:
        record = with_existing_store(database_url, lambda store: store.revoke_token(parsed))
    except TokenNotFound as exc:
        raise CLIError(str(exc)) from exc
    click.echo(f"revoked token {record.id} (tenant {record.tenant!r})")


def register(group: click.Group) -> None:
    group.add_command(token)
