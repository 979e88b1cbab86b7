"""`genai-jobs dataset ...` and `genai-jobs vdb ...`: datasets and vector databases from a shell.

Like the job commands they talk to a running server through a client, print
what scripts need on stdout (ids alone on their line, or `--json`), hints on
stderr, and turn failures into one-line errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from genai_jobs.cli import remote
from genai_jobs.cli.errors import CLIError
from genai_jobs.client import ValidationFailed
from genai_jobs.vectors.client import (
    DatasetInfo,
    SearchHit,
    VectorClient,
    VectorDatabaseInfo,
    Versions,
    bad_files,
    upload_files,
)

# How much of a hit's text `vdb search` shows on its line.
SNIPPET_CHARS = 160
# A search still unanswered after this long is most likely the first of the server
# process, which loads the embedding model first: `vdb search` says so.
SLOW_SEARCH_SECONDS = 1.0
SLOW_SEARCH_NOTICE = ("searching: the first search after the server starts waits for it to "
                      "load the embedding model (up to a minute)")


@contextmanager
def _connected(url: str, token: str | None) -> Iterator[VectorClient]:
    if not token:
        raise CLIError("no token: pass --token or set GENAI_JOBS_TOKEN")
    try:
        client = VectorClient(url, token=token)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    with client, remote._client_errors(None):
        yield client


def _json_option(command: Any) -> Any:
    return click.option("--json", "as_json", envvar="GENAI_JOBS_JSON", is_flag=True,
                        help="Print the answer as JSON.")(command)


def _as_json(model: BaseModel | list[Any]) -> str:
    if isinstance(model, list):
        return json.dumps([item.model_dump(mode="json", by_alias=True) for item in model],
                          indent=2)
    return json.dumps(model.model_dump(mode="json", by_alias=True), indent=2)


# -- datasets -----------------------------------------------------------------


@click.group()
def dataset() -> None:
    """Upload, list and delete datasets (the documents vector databases are built from)."""


@dataset.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--name", help="The dataset's name (default: the first file's or folder's).")
@click.option("--skip-bad-files", is_flag=True, help="Upload the good files and list the bad "
              "ones (empty, corrupt, ...) as skipped, instead of refusing them all.")
@_json_option
@remote._server_options
def upload(paths: tuple[str, ...], name: str | None, skip_bad_files: bool, as_json: bool,
           url: str, token: str | None) -> None:
    """Upload files and folders (.txt .md .html .pdf .zip) as one dataset; print its id.

    A folder contributes its supported files, named by their path from the folder's
    parent. A .csv (a `document` column, maybe `document_file_path` and metadata
    columns) is a dataset of its own, a document per row. Bad files are listed, every
    one, and refuse the upload, unless --skip-bad-files.
    """
    files = upload_files(paths)
    if not files:
        raise CLIError("no .txt, .md, .html, .pdf, .zip or .csv files in " + " ".join(paths))
    with _connected(url, token) as client:
        try:
            info = client.upload_dataset(paths, name=name, skip_bad_files=skip_bad_files)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
        except ValidationFailed as exc:
            _explain_bad_files(exc, files, skip_bad_files)
    if as_json:
        click.echo(_as_json(info))
    else:
        click.echo(str(info.id))
        click.echo(f"{info.row_count} document(s), {info.dataset_size:,} bytes", err=True)
    for skipped in info.skipped_files:
        click.echo(f"skipped {skipped.name}: {skipped.reason}", err=True)


def _explain_bad_files(exc: ValidationFailed, files: list[tuple[str, Path]],
                       skipping: bool) -> NoReturn:
    """Every bad file on its line, then what to do; other refusals as they are."""
    bad, others = bad_files(exc)
    if not bad or others:
        raise exc
    for error in bad:
        click.echo(f"bad file {error.msg}", err=True)
    if skipping:
        raise CLIError(f"every file is bad ({len(bad)}): nothing to upload")
    # A zip sent as it is holds files not counted here: how many are good is not known.
    [(first, _), *_] = files
    sent_as_is = len(files) == 1 and not Path(first).parent.name
    good = None if sent_as_is and first.lower().endswith(".zip") else len(files) - len(bad)
    summary = f"{len(bad)} bad file(s); nothing was uploaded"
    if good is None:
        raise CLIError(f"{summary}: add --skip-bad-files to upload the others without them")
    if good > 0:
        raise CLIError(f"{summary}: add --skip-bad-files to upload the other {good} "
                       "without them")
    raise CLIError(f"{summary}: every file is bad")


@dataset.command("list")
@_json_option
@remote._server_options
def list_datasets(as_json: bool, url: str, token: str | None) -> None:
    """List your datasets, newest first."""
    with _connected(url, token) as client:
        found = client.list_datasets()
    if as_json:
        click.echo(_as_json(found))
        return
    for info in found:
        click.echo(_dataset_line(info))


def _dataset_line(info: DatasetInfo) -> str:
    return (f"{info.id}  {info.row_count:>6} documents  {info.dataset_size:>12,} bytes  "
            f"{info.name}")


@dataset.command("delete")
@click.argument("dataset_id", metavar="ID")
@remote._server_options
def delete_dataset(dataset_id: str, url: str, token: str | None) -> None:
    """Delete dataset ID (vector databases built from it stay)."""
    with _connected(url, token) as client:
        client.delete_dataset(dataset_id)
    click.echo(f"deleted dataset {dataset_id}")


# -- vector databases -----------------------------------------------------------


@click.group()
def vdb() -> None:
    """Create, search, list and delete vector databases."""


@vdb.command()
@click.option("--dataset", "dataset_id", required=True, help="The dataset to index.")
@click.option("--name", help="The vector database's name (default: 'Vector Database for "
              "<dataset name>', or the parent's).")
@click.option("--chunk-size", type=click.IntRange(min=1),
              help="Tokens per chunk (default: what the model reads whole, 254).")
@click.option("--chunk-overlap", "chunk_overlap_percentage", type=click.IntRange(0, 50),
              help="Percent of a chunk's tokens that the next one repeats (default 0).")
@click.option("--separator", "separators", multiple=True,
              help="Split at this text before cutting token windows; repeat for several, "
                   "in order (default: blank lines, lines, spaces). --separator '' alone: "
                   "token windows only.")
@click.option("--model", "embedding_model",
              help="Embedding model (default sentence-transformers/all-MiniLM-L6-v2).")
@click.option("--use-case", "use_case_id", help="A use case label (DataRobot's useCaseId).")
@click.option("--parent", "parent_id", help="Make a new version of this vector database: its "
              "chunks are reused and the dataset's added.")
@click.option("--expires-in", type=float, metavar="SECONDS",
              help="The build must be done this long after submission, or it expires.")
@click.option("--wait", "then_wait", is_flag=True, help="Then show the build's progress "
              "until it ends, like `genai-jobs wait`.")
@remote._timeout_option
@_json_option
@remote._server_options
@click.pass_context
def create(ctx: click.Context, dataset_id: str, name: str | None, chunk_size: int | None,
           chunk_overlap_percentage: int | None, separators: tuple[str, ...],
           embedding_model: str | None, use_case_id: str | None, parent_id: str | None,
           expires_in: float | None, then_wait: bool, timeout: float | None, as_json: bool,
           url: str, token: str | None) -> None:
    """Create a vector database from a dataset and start its build; print its id.

    The build is a job: `genai-jobs wait BUILD_ID` shows its progress.
    """
    with _connected(url, token) as client:
        info = client.create_vector_database(
            dataset_id, name, chunk_size=chunk_size,
            chunk_overlap_percentage=chunk_overlap_percentage,
            separators=list(separators) if separators else None,
            embedding_model=embedding_model, use_case_id=use_case_id, parent_id=parent_id,
            expires_in=expires_in)
    click.echo(_as_json(info) if as_json else str(info.id))
    click.echo(f"building as job {info.build_status_id}; follow it with: "
               f"genai-jobs wait {info.build_status_id}", err=True)
    if then_wait:
        _wait_and_report(ctx, url, token, info, timeout, changes=False)


def _wait_and_report(ctx: click.Context, url: str, token: str | None,
                     info: VectorDatabaseInfo, timeout: float | None, changes: bool) -> None:
    """Show the build's progress until it ends and exit as `genai-jobs wait` does; first,
    on stderr, what the finished build changed (with `changes`) and left out."""
    job_id = str(info.build_status_id)
    with remote._connected(url, token, job_id) as jobs:
        try:
            remote._wait_and_exit(ctx, jobs, job_id, timeout)
        except click.exceptions.Exit:  # its outcome is printed: then what the build did
            _report_build(url, token, str(info.id), changes)
            raise


def _report_build(url: str, token: str | None, vdb_id: str, changes: bool) -> None:
    """A failure to read the vector database is a note, not a change of the exit code,
    which says how the build ended."""
    try:
        with _connected(url, token) as client:
            info = client.get_vector_database(vdb_id)
    except CLIError as exc:
        click.echo(f"note: could not read what the build did: {exc}", err=True)
        return
    if changes and info.changes:
        click.echo(changes_line(info.changes), err=True)
    _echo_skipped_documents(info)


def _echo_skipped_documents(info: VectorDatabaseInfo) -> None:
    for document in info.skipped_documents:
        click.echo(f"skipped {document.name}: {document.reason}", err=True)


@vdb.command()
@click.argument("vdb_id", metavar="ID")
@click.option("--dataset", "dataset_id", required=True, help="The dataset to update it from.")
@click.option("--mode", type=click.Choice(["add", "replace"]), required=True,
              help="add: the dataset's documents are added (one of the same name replaces "
                   "the old); replace: the new version holds the dataset's documents and no "
                   "others.")
@click.option("--parent", "parent_id", help="The version to start from (default: the one "
              "that answers the family's searches).")
@click.option("--name", help="The new version's name (default: its parent's).")
@click.option("--expires-in", type=float, metavar="SECONDS",
              help="Stop the build (EXPIRED) if it is not finished by then.")
@click.option("--wait", "then_wait", is_flag=True, help="Then show the build's progress "
              "until it ends, and what changed; exit as `genai-jobs wait` does.")
@remote._timeout_option
@_json_option
@remote._server_options
@click.pass_context
def update(ctx: click.Context, vdb_id: str, dataset_id: str, mode: str, parent_id: str | None,
           name: str | None, expires_in: float | None, then_wait: bool,
           timeout: float | None, as_json: bool, url: str, token: str | None) -> None:
    """Make a new version of vector database ID from a dataset; print its id.

    Unchanged documents keep their chunks and vectors, and no chunk the family has
    embedded is embedded again. The version answers the family's searches
    (`vdb search --active`) once its build is COMPLETED; until then, and if it
    fails, the version before it does.
    """
    with _connected(url, token) as client:
        info = client.update_vector_database(vdb_id, dataset_id, mode, parent_id=parent_id,
                                             name=name, expires_in=expires_in)
    click.echo(_as_json(info) if as_json else str(info.id))
    click.echo(f"version {info.version}, from {info.parent_id}, building as job "
               f"{info.build_status_id}; follow it with: genai-jobs wait "
               f"{info.build_status_id}", err=True)
    if then_wait:
        _wait_and_report(ctx, url, token, info, timeout, changes=True)


def changes_line(changes: dict[str, Any]) -> str:
    """`documents: 1 added, 1 updated, 3 unchanged, 1 deleted; chunks: ...`"""
    documents, chunks = changes["documents"], changes["chunks"]

    def counts(of: dict[str, int]) -> str:
        return (f"{of['added']:,} added, {of['updated']:,} updated, "
                f"{of['skipped']:,} unchanged, {of['deleted']:,} deleted")

    return (f"documents: {counts(documents)}; chunks: {counts(chunks)} "
            f"({chunks['embedded']:,} embedded, {chunks['reused']:,} reused)")


@vdb.command()
@click.argument("vdb_id", metavar="ID")
@_json_option
@remote._server_options
def versions(vdb_id: str, as_json: bool, url: str, token: str | None) -> None:
    """List the versions of vector database ID's family, oldest first; `*` marks the one
    that answers the family's searches."""
    with _connected(url, token) as client:
        family = client.versions(vdb_id)
    _echo_versions(family, as_json)


def _echo_versions(family: Versions, as_json: bool) -> None:
    if as_json:
        click.echo(_as_json(family))
        return
    for info in family.data:
        mark = "*" if info.id == family.active_version_id else " "
        line = f"{mark} {_vdb_line(info)}"
        if info.changes:
            line += f"  [{changes_line(info.changes)}]"
        click.echo(line)


@vdb.command()
@click.argument("vdb_id", metavar="ID")
@click.argument("version_id", metavar="VERSION_ID")
@_json_option
@remote._server_options
def activate(vdb_id: str, version_id: str, as_json: bool, url: str,
             token: str | None) -> None:
    """Make VERSION_ID (COMPLETED) answer the searches of ID's family: a rollback, or a
    roll forward, at once and without building anything."""
    with _connected(url, token) as client:
        family = client.set_active_version(vdb_id, version_id)
    _echo_versions(family, as_json)


@vdb.command()
@click.argument("vdb_id", metavar="ID")
@click.option("--reembed", type=click.IntRange(min=0), metavar="N",
              help="Chunks to embed again and compare with their stored vectors (default 64, "
                   "spread over the version).")
@click.option("--full", is_flag=True, help="Embed every chunk again (as long as a build).")
@click.option("--wait", "then_wait", is_flag=True, help="Wait for the report and print it; "
              "exit 1 if it found drift.")
@remote._timeout_option
@_json_option
@remote._server_options
def verify(vdb_id: str, reembed: int | None, full: bool, then_wait: bool,
           timeout: float | None, as_json: bool, url: str, token: str | None) -> None:
    """Check that vector database ID's index holds exactly the chunks its records list,
    with the right vectors; print the checking job's id (a `vectorDatabase.verify` job)."""
    with _connected(url, token) as client:
        job = client.verify_vector_database(vdb_id, reembed=reembed, full=full)
        click.echo(str(job.status_id))
        if not then_wait:
            click.echo(f"follow it with: genai-jobs wait {job.status_id}", err=True)
            return
        job = client.wait_for_job(job.status_id, timeout=timeout)
    if job.status != "COMPLETED" or job.result is None:
        raise CLIError(f"verify {job.status}: {job.message}")
    report: dict[str, Any] = dict(job.result)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{report['chunks']:,} chunks of {report['documents']:,} documents checked,"
                   f" {report['reembedded']:,} embedded again: "
                   + ("no drift" if report["ok"] else "DRIFT"), err=True)
        for item in report["drift"]:
            click.echo(f"{item['kind']}: {item['count']:,}", err=True)
            for example in item["examples"]:
                click.echo(f"  {example}", err=True)
    if not report["ok"]:
        raise click.exceptions.Exit(1)


@vdb.command()
@click.argument("vdb_id", metavar="ID")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True,
              help="How many chunks to return.")
@click.option("--active", is_flag=True, help="Search the version that answers ID's family "
              "(its latest completed update, or the one chosen by `vdb activate`), not ID.")
@click.option("--filter", "where", metavar="JSON", help="Only chunks whose metadata match, "
              """e.g. '{"team": "security", "priority": {"$lte": 2}}'.""")
@click.option("--mode", type=click.Choice(["dense", "keyword", "hybrid"]), default="dense",
              show_default=True, help="dense: nearest by meaning; keyword: by the query's "
              "words (exact codes, names); hybrid: both, fused.")
@_json_option
@remote._server_options
def search(vdb_id: str, query: str, k: int, active: bool, where: str | None, mode: str,
           as_json: bool, url: str, token: str | None) -> None:
    """Print the K chunks of vector database ID nearest QUERY, best first."""
    parsed = None
    if where is not None:
        try:
            parsed = json.loads(where)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--filter") from None
    with _connected(url, token) as client, _notice_if_slow(SLOW_SEARCH_NOTICE,
                                                           SLOW_SEARCH_SECONDS):
        hits = client.search(vdb_id, query, k, active=active, filter=parsed, mode=mode)
    if as_json:
        click.echo(_as_json(hits))
        return
    for hit in hits:
        click.echo(_hit_line(hit))


@contextmanager
def _notice_if_slow(message: str, after: float) -> Iterator[None]:
    """Once the block has taken `after` seconds, say on stderr what it waits for: with
    a spinner on a terminal (gone when it ends), else as one line."""
    console = Console(stderr=True)
    done = threading.Event()

    def notice() -> None:
        if done.wait(after):
            return
        if not console.is_terminal:
            click.echo(message, err=True)
            return
        with console.status(escape(message)):
            done.wait()

    thread = threading.Thread(target=notice, name="slow-notice", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _hit_line(hit: SearchHit) -> str:
    where = f"{hit.document_name}#{hit.chunk_index}"
    if hit.page is not None:
        where += f" (page {hit.page})"
    text = " ".join(hit.text.split())
    if len(text) > SNIPPET_CHARS:
        text = text[:SNIPPET_CHARS - 1] + "…"
    return f"{hit.score:.3f}  {where}  {text}"


@vdb.command("get")
@click.argument("vdb_id", metavar="ID")
@_json_option
@remote._server_options
def get_vdb(vdb_id: str, as_json: bool, url: str, token: str | None) -> None:
    """Print vector database ID."""
    with _connected(url, token) as client:
        info = client.get_vector_database(vdb_id)
    click.echo(_as_json(info) if as_json else _vdb_line(info))
    _echo_skipped_documents(info)


@vdb.command("list")
@click.option("--search", help="Only those whose name contains this (any case).")
@click.option("--completed-only", is_flag=True, help="Only COMPLETED ones.")
@click.option("--sort", help="name, creationDate, chunksCount, size, ...; '-' first for "
              "descending (default -creationDate).")
@_json_option
@remote._server_options
def list_vdbs(search: str | None, completed_only: bool, sort: str | None, as_json: bool,
              url: str, token: str | None) -> None:
    """List your vector databases, newest first."""
    with _connected(url, token) as client:
        found = client.list_vector_databases(search=search, completed_only=completed_only,
                                             sort=sort)
    if as_json:
        click.echo(_as_json(found))
        return
    for info in found:
        click.echo(_vdb_line(info))


def _vdb_line(info: VectorDatabaseInfo) -> str:
    line = (f"{info.id}  {info.execution_status:<9}  {info.chunks_count:>8,} chunks  "
            f"v{info.version}  {info.name}")
    return f"{line}: {info.error_message}" if info.error_message else line


@vdb.command("rename")
@click.argument("vdb_id", metavar="ID")
@click.argument("name")
@remote._server_options
def rename_vdb(vdb_id: str, name: str, url: str, token: str | None) -> None:
    """Rename vector database ID."""
    with _connected(url, token) as client:
        info = client.rename_vector_database(vdb_id, name)
    click.echo(_vdb_line(info))


@vdb.command("download")
@click.argument("vdb_id", metavar="ID")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@remote._server_options
def download_vdb(vdb_id: str, path: str, url: str, token: str | None) -> None:
    """Save vector database ID's chunks, metadata and vectors as a Parquet file at PATH."""
    with _connected(url, token) as client:
        saved = client.download_text_and_embeddings(vdb_id, path)
    click.echo(str(saved))


@vdb.command("delete")
@click.argument("vdb_id", metavar="ID")
@remote._server_options
def delete_vdb(vdb_id: str, url: str, token: str | None) -> None:
    """Delete vector database ID (a build still running is aborted)."""
    with _connected(url, token) as client:
        client.delete_vector_database(vdb_id)
    click.echo(f"deleted vector database {vdb_id}")


def register(group: click.Group) -> None:
    group.add_command(dataset)
    group.add_command(vdb)
