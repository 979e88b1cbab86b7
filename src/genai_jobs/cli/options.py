"""Options shared by several commands; each reads `GENAI_JOBS_<FLAG>` too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from genai_jobs.settings import DEFAULT_DATABASE_URL
from genai_jobs.store import SQLITE_PREFIX, sqlite_path

F = TypeVar("F", bound=Callable[..., Any])


def database_url(command: F) -> F:
    return click.option(
        "--database-url", envvar="GENAI_JOBS_DATABASE_URL", default=DEFAULT_DATABASE_URL,
        show_default=True, help="sqlite:///PATH (embedded) or postgresql://... (scale-out).",
    )(command)


def apps(command: F) -> F:
    return click.option(
        "--app", "apps", multiple=True, envvar="GENAI_JOBS_APP", metavar="MODULE:ATTR",
        help="A module attribute holding a genai_jobs Registry of job types (repeatable).",
    )(command)


def missing_sqlite_file(database_url: str) -> Path | None:
    """The file a `sqlite:///` URL names, when there is none yet; opening it would make
    a new, empty store. None for an existing file and for PostgreSQL."""
    if not database_url.startswith(SQLITE_PREFIX):
        return None
    path = sqlite_path(database_url)
    return None if path.exists() else path


def no_store_here(database_url: str, path: Path) -> str:
    """Why a command that expects the server's store will not make a new one at `path`."""
    where = "" if path.is_absolute() else ", relative to the current directory"
    return (f"no store at {path.absolute()} ({database_url}{where}): point --database-url "
            "or GENAI_JOBS_DATABASE_URL at the server's store, or create this one with "
            "`genai-jobs migrate`")
