"""Commands that talk to a running server: submit, status, wait, result, cancel, list,
job-types.

They go through `genai_jobs.client` like any other program would, and turn its
errors into `CLIError`s, so that a failure is one line on stderr. Machine
output (ids, status lines, `--json`) goes to stdout; the live progress bar goes
to stderr and only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar
from uuid import UUID

import click
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from genai_jobs.cli.errors import CLIError
from genai_jobs.client import (
    DEFAULT_URL,
    Client,
    GenAIJobsError,
    JobInfo,
    JobList,
    JobState,
    JobTypeInfo,
    NotFound,
    StatusInfo,
    ValidationFailed,
    WaitTimeout,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_COMPLETED = 0
EXIT_FAILED = 1  # ERROR, ABORTED or EXPIRED
EXIT_TIMED_OUT = 2
EXIT_NOT_ENDED = 2  # `result` of a job still INITIALIZED or RUNNING
# A table piped to a file or another program is not cut to 80 columns,
# so that each job stays on one line for grep and friends.
PIPED_TABLE_COLUMNS = 200
STATUS_FIELD_ORDER = (
    "statusId",
    "status",
    "code",
    "statusType",
    "created",
    "description",
    "message",
)
# What `result` prints of a job that failed: the state, how it got there, and why.
FAILURE_FIELD_ORDER = (
    "statusId",
    "status",
    "statusType",
    "attempts",
    "maxAttempts",
    "finishedAt",
    "message",
)


def register(group: click.Group) -> None:
    """Add the commands of this module to the `genai-jobs` group."""
    for command in (submit, status, wait, result, cancel, list_jobs, job_types):
        group.add_command(command)


def _server_options(command: F) -> F:
    command = click.option(
        "--token",
        envvar="GENAI_JOBS_TOKEN",
        show_envvar=True,
        help="API token (see `genai-jobs token create`).",
    )(command)
    return click.option(
        "--url",
        envvar="GENAI_JOBS_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        help="The server.",
    )(command)


def _timeout_option(command: F) -> F:
    return click.option(
        "--timeout",
        envvar="GENAI_JOBS_TIMEOUT",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        help="Give up waiting after this long (exit code 2).  [default: no limit]",
    )(command)


# -- commands -----------------------------------------------------------------


@click.command()
@click.argument("job_type")
@click.option(
    "--payload",
    "payload_text",
    envvar="GENAI_JOBS_PAYLOAD",
    metavar="JSON",
    help="The job's input, a JSON object.",
)
@click.option(
    "--payload-file",
    envvar="GENAI_JOBS_PAYLOAD_FILE",
    type=click.File("r"),
    help="Read the payload from this file ('-' for stdin).",
)
@click.option("--description", envvar="GENAI_JOBS_DESCRIPTION", help="Free text kept with the job.")
@click.option(
    "--expires-in",
    envvar="GENAI_JOBS_EXPIRES_IN",
    type=float,
    metavar="SECONDS",
    help="The job must be done this long after submission, or it expires.",
)
@click.option(
    "--max-attempts",
    envvar="GENAI_JOBS_MAX_ATTEMPTS",
    type=int,
    help="Attempts before a failing job is an ERROR.",
)
@click.option("--priority", envvar="GENAI_JOBS_PRIORITY", type=int, help="Higher runs first.")
@click.option(
    "--wait",
    "then_wait",
    envvar="GENAI_JOBS_WAIT",
    is_flag=True,
    help="Then wait for the job like `genai-jobs wait`.",
)
@_timeout_option
@_server_options
@click.pass_context
def submit(
    ctx: click.Context,
    job_type: str,
    payload_text: str | None,
    payload_file: IO[str] | None,
    description: str | None,
    expires_in: float | None,
    max_attempts: int | None,
    priority: int | None,
    then_wait: bool,
    timeout: float | None,
    url: str,
    token: str | None,
) -> None:
    """Submit a job of JOB_TYPE and print its id."""
    payload = _read_payload(payload_text, payload_file)
    with _connected(url, token) as client:
        info = client.submit(
            job_type,
            payload,
            description=description,
            expires_in=expires_in,
            max_attempts=max_attempts,
            priority=priority,
        )
        # Alone on its line, so that `id=$(genai-jobs submit ...)` works.
        click.echo(str(info.status_id))
        if then_wait:
            _wait_and_exit(ctx, client, str(info.status_id), timeout)


@click.command()
@click.argument("status_id", metavar="ID")
@click.option(
    "--json",
    "as_json",
    envvar="GENAI_JOBS_JSON",
    is_flag=True,
    help="Print the StatusResponse as JSON.",
)
@_server_options
def status(status_id: str, as_json: bool, url: str, token: str | None) -> None:
    """Print the status of job ID."""
    with _connected(url, token, status_id) as client:
        info = client.status(status_id)
    click.echo(_as_json(info) if as_json else _status_fields(info))


@click.command()
@click.argument("status_id", metavar="ID")
@_timeout_option
@_server_options
@click.pass_context
def wait(
    ctx: click.Context, status_id: str, timeout: float | None, url: str, token: str | None
) -> None:
    """Show the progress of job ID until it ends.

    Exit code 0 when it COMPLETED, 1 when it ended in ERROR, ABORTED or
    EXPIRED, 2 when --timeout ran out first.
    """
    with _connected(url, token, status_id) as client:
        _wait_and_exit(ctx, client, status_id, timeout)


@click.command()
@click.argument("status_id", metavar="ID")
@_server_options
@click.pass_context
def result(ctx: click.Context, status_id: str, url: str, token: str | None) -> None:
    """Print the result of job ID as JSON, or why it failed.

    Exit code 0 when it COMPLETED, 1 when it ended in ERROR, ABORTED or
    EXPIRED, 2 when it has not ended yet.
    """
    with _connected(url, token, status_id) as client:
        job = client.job(status_id)
    if job.status is JobState.COMPLETED:
        # The result alone on stdout, whole, for `jq` and friends.
        click.echo(json.dumps(job.result, indent=2, ensure_ascii=False))
        if job.result_location:
            click.echo(f"result location: {job.result_location}", err=True)
        ctx.exit(EXIT_COMPLETED)
    if job.status.is_terminal:
        click.echo(_fields(job, FAILURE_FIELD_ORDER))
        ctx.exit(EXIT_FAILED)
    click.echo(_status_line(job))
    # Not a CLIError: the exit code must stay 2 even under --debug.
    click.echo(f"error: job {job.status_id} is {job.status.value}: it has no result yet "
               f"(follow it with: genai-jobs wait {job.status_id})", err=True)
    ctx.exit(EXIT_NOT_ENDED)


@click.command()
@click.argument("status_id", metavar="ID")
@_server_options
def cancel(status_id: str, url: str, token: str | None) -> None:
    """Abort job ID and print its status line.

    A running job stays RUNNING until its worker has stopped it.
    """
    with _connected(url, token, status_id) as client:
        info = client.cancel(status_id)
    click.echo(_status_line(info))


@click.command("list")
@click.option(
    "--status",
    "states",
    envvar="GENAI_JOBS_STATUS",
    multiple=True,
    type=click.Choice([state.value for state in JobState], case_sensitive=False),
    help="Only jobs in this state (repeat for several).",
)
@click.option("--job-type", envvar="GENAI_JOBS_JOB_TYPE", help="Only jobs of this type.")
@click.option(
    "--limit",
    envvar="GENAI_JOBS_LIMIT",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Show at most this many jobs, newest first.",
)
@click.option(
    "--json",
    "as_json",
    envvar="GENAI_JOBS_JSON",
    is_flag=True,
    help="Print the page of jobs as JSON.",
)
@_server_options
def list_jobs(
    states: tuple[str, ...],
    job_type: str | None,
    limit: int,
    as_json: bool,
    url: str,
    token: str | None,
) -> None:
    """List your jobs, newest first."""
    with _connected(url, token) as client:
        page = client.list(status=states or None, job_type=job_type, limit=limit)
    if as_json:
        click.echo(_as_json(page))
    else:
        _print_table(page)


@click.command("job-types")
@click.option(
    "--json",
    "as_json",
    envvar="GENAI_JOBS_JSON",
    is_flag=True,
    help="Print the job types as JSON, payload schemas included.",
)
@_server_options
def job_types(as_json: bool, url: str, token: str | None) -> None:
    """List the job types this server accepts."""
    with _connected(url, token) as client:
        found = client.job_types()
    if as_json:
        data = [job_type.model_dump(mode="json", by_alias=True) for job_type in found]
        click.echo(json.dumps({"count": len(data), "data": data}, indent=2))
    else:
        _print_job_types(found)


# -- talking to the server ----------------------------------------------------


@contextmanager
def _connected(url: str, token: str | None, status_id: str | None = None) -> Iterator[Client]:
    """A client whose errors come out as one-line `CLIError`s."""
    if not token:
        raise CLIError("no token: pass --token or set GENAI_JOBS_TOKEN")
    try:
        client = Client(url, token=token)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    with client, _client_errors(status_id):
        yield client


@contextmanager
def _client_errors(status_id: str | None) -> Iterator[None]:
    try:
        yield
    except GenAIJobsError as exc:
        if status_id is not None and _is_about_a_bad_id(exc, status_id):
            raise CLIError(f"{status_id!r} is not a job id") from exc
        raise CLIError(str(exc)) from exc


def _is_about_a_bad_id(exc: GenAIJobsError, status_id: str) -> bool:
    # The server is the judge of ids: it answers 422 about the path for most
    # non-UUIDs, and 404 for those with a slash, which match no route at all.
    if isinstance(exc, ValidationFailed):
        return exc.is_about("path", "statusId")
    if isinstance(exc, NotFound):
        return not _is_uuid(status_id)
    return False


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _read_payload(text: str | None, file: IO[str] | None) -> dict[str, Any] | None:
    if text is not None and file is not None:
        raise click.UsageError("give --payload or --payload-file, not both")
    if file is not None:
        text, source = file.read(), file.name
    else:
        source = "--payload"
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(
            f"invalid JSON in {source} at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(value, dict):
        raise CLIError(f'{source} must be a JSON object, like {{"seconds": 1}}')
    return value


# -- waiting ------------------------------------------------------------------


def _wait_and_exit(
    ctx: click.Context, client: Client, status_id: str, timeout: float | None
) -> None:
    try:
        with _progress_bar() as show:
            job = client.wait(status_id, timeout=timeout, on_change=show)
    except WaitTimeout as exc:
        click.echo(_status_line(exc.job))
        # Not a CLIError: the exit code must stay 2 even under --debug.
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_TIMED_OUT)
    click.echo(_status_line(job))
    ctx.exit(EXIT_COMPLETED if job.status is JobState.COMPLETED else EXIT_FAILED)


@contextmanager
def _progress_bar() -> Iterator[Callable[[JobInfo], None]]:
    """A live bar on stderr, fed by `wait`'s `on_change`; silent off a terminal."""
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task("waiting", total=None)

        def show(job: JobInfo) -> None:
            label = job.status.value
            if job.progress_message:
                label += f" {job.progress_message}"
            # A known fraction turns the pulsing bar into a filling one.
            total = 1.0 if job.progress is not None else None
            progress.update(
                task, description=escape(label), total=total, completed=job.progress or 0.0
            )

        yield show


# -- printing -----------------------------------------------------------------


def _status_line(info: StatusInfo) -> str:
    """`<id> <STATE>`, then the job's message when it has one."""
    line = f"{info.status_id} {info.status.value}"
    return f"{line}: {info.message}" if info.message else line


def _status_fields(info: StatusInfo) -> str:
    """The StatusResponse as `name: value` lines, what a person looks for first."""
    return _fields(info, STATUS_FIELD_ORDER)


def _fields(info: StatusInfo, names: tuple[str, ...]) -> str:
    """`name: value` lines of these fields, values whole (a message is never cut)."""
    fields = info.model_dump(mode="json", by_alias=True)
    width = max(len(name) for name in names) + 1
    return "\n".join(f"{name + ':':<{width}} {fields[name]}" for name in names)


def _as_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json", by_alias=True), indent=2)


def _print_table(page: JobList) -> None:
    table = Table("ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "MESSAGE")
    table.columns[0].no_wrap = True
    for job in page.data:
        table.add_row(
            str(job.status_id),
            escape(job.job_type),
            job.status.value,
            "" if job.progress is None else f"{job.progress:.0%}",
            job.created.strftime("%Y-%m-%d %H:%M:%S"),
            escape(job.message),
        )
    total = page.total_count if page.total_count is not None else page.count
    table.caption = f"{page.count} of {total} jobs"
    width = None if sys.stdout.isatty() else PIPED_TABLE_COLUMNS
    Console(width=width).print(table)


def _print_job_types(found: list[JobTypeInfo]) -> None:
    """A table, then why each unavailable job type is, in full."""
    table = Table("NAME", "AVAILABLE", "ATTEMPT TIMEOUT", "DESCRIPTION")
    table.columns[0].no_wrap = True
    for job_type in found:
        timeout = job_type.attempt_timeout_seconds
        table.add_row(
            escape(job_type.name),
            "yes" if job_type.available else "no",
            "-" if timeout is None else f"{timeout:g} s",
            escape(job_type.description),
        )
    table.caption = f"{len(found)} job types"
    width = None if sys.stdout.isatty() else PIPED_TABLE_COLUMNS
    console = Console(width=width)
    console.print(table)
    for job_type in found:
        if not job_type.available:
            reason = job_type.unavailable_reason or "no reason given"
            console.print(escape(f"{job_type.name} is unavailable: {reason}"), soft_wrap=True)
