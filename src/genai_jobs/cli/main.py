"""Entry point of the `genai-jobs` console script."""

from __future__ import annotations

import sys

import click

from genai_jobs import __version__
from genai_jobs.cli import remote, service, tenants, tokens
from genai_jobs.cli.errors import CLIError
from genai_jobs.domain import DomainError
from genai_jobs.vectors import cli as vectors_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genai-jobs")
@click.option("--debug", is_flag=True, envvar="GENAI_JOBS_DEBUG",
              help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """genai-jobs: durable GenAI jobs behind DataRobot's job status API."""
    ctx.obj = {"debug": debug}


service.register(cli)
tokens.register(cli)
tenants.register(cli)
remote.register(cli)
vectors_cli.register(cli)


def main() -> None:
    debug = "--debug" in sys.argv[1:] or _env_flag("GENAI_JOBS_DEBUG")
    try:
        outcome = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CLIError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except DomainError as exc:  # e.g. the store is unreachable
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # the last line of defence: one line, no traceback
        if debug:
            raise
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    # ctx.exit(N) in a command (e.g. `wait`'s exit codes) comes back as N here.
    sys.exit(outcome if isinstance(outcome, int) else 0)


def _env_flag(name: str) -> bool:
    import os

    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}
