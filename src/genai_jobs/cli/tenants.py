"""`tenant list|limits`: each tenant's limits and queue, straight from the store.

Like `token`, these need no server: an operator sets limits where the tokens are
made. A running server applies a change within a second (domain/tenants.py).
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from genai_jobs.cli import options
from genai_jobs.cli.errors import CLIError
from genai_jobs.cli.tokens import with_existing_store
from genai_jobs.domain import TenantLimits
from genai_jobs.domain.tenants import DEFAULTS_TENANT, limits_in_force
from genai_jobs.store import Store
from genai_jobs.tokens import tenant_name

_NO_LIMIT = "none"


class _Limit(click.ParamType[int | float | str]):
    """A limit's value, or `none` to lift it."""

    def __init__(self, kind: type[int] | type[float], minimum: float, strict: bool) -> None:
        self.kind = kind
        self.minimum = minimum
        self.strict = strict
        self.name = f"{kind.__name__}|none"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int | float | str:
        if isinstance(value, int | float) or value == _NO_LIMIT:
            return value
        try:
            number = self.kind(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a {self.kind.__name__} (or 'none')", param, ctx)
        if number < self.minimum or (self.strict and number == self.minimum):
            relation = ">" if self.strict else ">="
            self.fail(f"must be {relation} {self.minimum:g} (or 'none')", param, ctx)
        return number


@click.group()
def tenant() -> None:
    """See tenants' queues and set the limits that keep one tenant from starving others."""


@tenant.command("list")
@options.database_url
def list_tenants(database_url: str) -> None:
    """Tenants (from tokens, limits and jobs) with their limits and queues."""

    async def read(store: Store) -> tuple[list[TenantLimits], dict[str, tuple[int, int]],
                                          set[str]]:
        tokens = {token.tenant for token in await store.list_tokens()}
        return await store.list_tenant_limits(), await store.tenant_usage(), tokens

    limits, usage, token_tenants = with_existing_store(database_url, read)
    own = {entry.tenant: entry for entry in limits}
    table = Table("tenant", "queued", "running", "max running", "max queued",
                  "submits/s", "max priority")
    for name in sorted(token_tenants | set(own) | set(usage)):
        shown = limits_in_force(name, own)
        queued, running = usage.get(name, (0, 0))
        table.add_row(name, str(queued), str(running), *_cells(shown))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    if DEFAULTS_TENANT in own:
        click.echo("Limits shown are in force: a tenant's own over the defaults ('*').")


@tenant.command()
@click.argument("name")
@click.option("--max-running", type=_Limit(int, 0, strict=False),
              help="Jobs of the tenant running at once ('none' lifts it).")
@click.option("--max-queued", type=_Limit(int, 0, strict=False),
              help="Jobs of the tenant waiting to start; more submits are refused (429).")
@click.option("--submits-per-second", type=_Limit(float, 0, strict=True),
              help="Jobs the tenant may create per second; more are refused (429).")
@click.option("--max-priority", type=_Limit(int, 0, strict=False),
              help="The highest priority the tenant may submit; higher is refused (422).")
@click.option("--clear", is_flag=True, help="Lift all of the tenant's own limits first.")
@options.database_url
def limits(name: str, max_running: int | str | None, max_queued: int | str | None,
           submits_per_second: float | str | None, max_priority: int | str | None,
           clear: bool, database_url: str) -> None:
    """Show or change NAME's limits ('*': the defaults of every tenant).

    Options change only the limits they name; the others keep their values."""
    if name != DEFAULTS_TENANT:
        try:
            name = tenant_name(name)
        except ValueError as exc:
            raise CLIError(f"NAME: {exc}") from exc
    changes = {"max_running": max_running, "max_queued": max_queued,
               "submits_per_second": submits_per_second, "max_priority": max_priority}

    async def apply(store: Store) -> TenantLimits:
        current = next((entry for entry in await store.list_tenant_limits()
                        if entry.tenant == name), TenantLimits(name))
        if clear:
            current = TenantLimits(name)
        values = {field: getattr(current, field) for field in changes}
        values.update({field: None if value == _NO_LIMIT else value
                       for field, value in changes.items() if value is not None})
        updated = TenantLimits(name, **values)
        if clear or any(value is not None for value in changes.values()):
            await store.set_tenant_limits(updated)
        return updated

    updated = with_existing_store(database_url, apply)
    cells = _cells(updated)
    click.echo(f"tenant {name!r}: max running {cells[0]}, max queued {cells[1]},"
               f" submits/s {cells[2]}, max priority {cells[3]}")


def _cells(limits: TenantLimits) -> list[str]:
    return ["-" if value is None else f"{value:g}" for value in (
        limits.max_running, limits.max_queued, limits.submits_per_second, limits.max_priority)]


def register(group: click.Group) -> None:
    group.add_command(tenant)
