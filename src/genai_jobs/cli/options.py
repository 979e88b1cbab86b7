"""Options shared by several commands; each reads `GENAI_JOBS_<FLAG>` too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from genai_jobs.settings import DEFAULT_DATABASE_URL

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
