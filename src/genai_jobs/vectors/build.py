"""The `vectorDatabase.build` job: a dataset's documents in, a searchable version out.

A version is made from its parent (none for a new vector database) and a
dataset, as vectors/plan.py decides document by document: an unchanged
document's chunk rows are copied from the parent with their vectors; a new or
changed one is extracted and chunked again, and each of its chunks takes the
vector of the same content (text, model, chunking) from the parent or another
built version of the family when one has it. Only chunks whose content the
family never embedded go to the model, each distinct text once.

Chunk rows are written first (the reading share of the progress bar), then the
vectors in seq order, group by group ("embedded 1,200 of 5,000 new chunks").
Stops (abort, deadline, shutdown) are honoured between model passes. The version
becomes searchable, and its family's active version if its parent was, in the
one transaction that finishes the build; until then searches of the family are
answered by the parent as before.

A retry starts over: its first write deletes whatever an earlier attempt left,
and the build id fences out that attempt should it still be running (a worker
that lost its lease). Resuming from committed batches would save work, but
every batch would then have to prove it came from the same dataset, model and
chunking as the ones before it; starting over makes a mixed index impossible
by construction, and the family's vectors are reused anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from genai_jobs.domain import Job
from genai_jobs.handlers import JobContext, JobType, PermanentError, Registry, ResultLocation
from genai_jobs.vectors.chunking import Chunking, chunk_text
from genai_jobs.vectors.embeddings import Embedder, get_embedder, is_loaded, unavailable_reason
from genai_jobs.vectors.extract import ExtractionFailed, extract
from genai_jobs.vectors.plan import (
    Changes,
    Keep,
    Make,
    Plan,
    chunking_key,
    content_key,
    document_digest,
    merged_ranges,
    plan_version,
)
from genai_jobs.vectors.records import (
    BuildOutcome,
    BuildSuperseded,
    CopiedRange,
    Dataset,
    DatasetNotFound,
    Document,
    DocumentInfo,
    DocumentKind,
    DocumentRecord,
    NewChunk,
    SkippedDocument,
    UpdateMode,
    VectorDatabase,
    VectorDatabaseNotFound,
)
from genai_jobs.vectors.settings import vector_settings
from genai_jobs.vectors.spooled import sha256_of
from genai_jobs.vectors.store import VectorStore, vector_store_for

if TYPE_CHECKING:  # numpy comes with the embeddings extra: imported where vectors are
    import numpy.typing as npt

    from genai_jobs.vectors.index import Matrix, Vector

log = logging.getLogger("genai_jobs.vectors")

T = TypeVar("T")
JOB_TYPE = "vectorDatabase.build"
# The share of the progress bar given to reading and chunking documents; embedding
# takes the rest (it is where nearly all the time goes).
READING_SHARE = 0.05
# While the first build of a worker process waits for the model, its progress says so
# this often, with the time spent: each saying is a change that wakes long-polls.
MODEL_LOADING_TICK_SECONDS = 1.0
# Chunk rows written per transaction while reading documents (text only: cheap).
CHUNK_WRITE_BATCH = 512
# Ranges of unchanged documents' chunks copied per transaction.
COPIES_PER_WRITE = 512
# Chunks whose vectors are written per transaction (copied ones are cheap; at most a
# model batch of them is embedded per group).
GROUP_CHUNKS = 2048
# Why a document of each kind gave no text (a text file of only white space is refused
# at upload; an HTML page or a PDF may still hold none).
NO_TEXT = {
    DocumentKind.PDF: "no text in its pages (a scanned PDF holds pictures of text, and no "
                      "OCR is done here)",
    DocumentKind.HTML: "no visible text (only markup, scripts or styles)",
    DocumentKind.MARKDOWN: "no text to index",
    DocumentKind.TEXT: "no text to index",
}

registry = Registry()


class BuildPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vectorDatabaseId: UUID = Field(description="The vector database to build "
                                               "(made by POST /vectorDatabases/).")


async def build_vector_database(ctx: JobContext, payload: BuildPayload) -> ResultLocation:
    """Build a vector database: extract, chunk and embed its dataset's documents."""
    reason = unavailable_reason()
    if reason is not None:
        raise PermanentError(f"{JOB_TYPE} {reason}")
    store = ctx.store
    if store is None:
        raise PermanentError(f"{JOB_TYPE} runs in a worker of genai-jobs (no store given)")
    job = await store.get(ctx.job_id)
    build = await _start(ctx, vector_store_for(store), job, payload.vectorDatabaseId)
    try:
        return await build.run()
    except BuildSuperseded as exc:
        raise PermanentError(f"{exc}; this attempt stopped") from exc
    except BaseException:
        # Aborted, expired, stopped or failed: nothing half-built is kept.
        await build.discard()
        raise


registry.add(JobType(
    JOB_TYPE, "Build a vector database: extract, chunk and embed its dataset's documents.",
    BuildPayload, build_vector_database, unavailable_reason=unavailable_reason()))


async def _start(ctx: JobContext, vectors: VectorStore, job: Job, vdb_id: UUID) -> Build:
    try:
        vdb = await vectors.get_vector_database(vdb_id, job.tenant)
        vdb = await vectors.start_build(vdb.id, job.id, uuid.uuid4())
    except VectorDatabaseNotFound as exc:
        raise PermanentError(f"{exc} (or it is built by another job)") from exc
    try:  # before the model loads: a deleted dataset fails the build at once
        dataset = await vectors.get_dataset(vdb.dataset_id, None)
        documents = await vectors.documents(vdb.dataset_id)
    except DatasetNotFound as exc:
        raise PermanentError(f"{exc}: it was deleted before the build read it") from exc
    # A retry says so in every progress message: what earlier attempts wrote is gone.
    note = ""
    if ctx.attempt > 1:
        ctx.logger.info("attempt %d starts the build over", ctx.attempt)
        note = f"attempt {ctx.attempt}, started over: "
    embedder = await _load_model(ctx, vdb.embedding_model, note)
    assert vdb.build_id is not None
    return Build(ctx, vectors, vdb, vdb.build_id, dataset, documents, embedder,
                 vector_settings().vector_build_batch_size, note)


async def _load_model(ctx: JobContext, name: str, note: str) -> Embedder:
    """The model, loaded in a thread on first use in this process, saying so meanwhile."""
    if is_loaded(name):  # at hand: nothing worth saying
        return await _in_thread(ctx, lambda: get_embedder(name))
    saying = asyncio.ensure_future(_say_loading(ctx, name, note))
    try:
        return await _in_thread(ctx, lambda: get_embedder(name))
    finally:
        saying.cancel()


async def _say_loading(ctx: JobContext, name: str, note: str) -> None:
    """Report the model's loading every tick, until cancelled once it is loaded. A
    message that changes wakes every watcher's long-poll: one said once, just after the
    job turned RUNNING, would be missed by a watcher whose next poll came after it."""
    started = time.monotonic()
    while True:  # bounded by the load, which cancels this, and the attempt's time-out
        ctx.progress(0.0, f"{note}loading the embedding model {name} "
                          f"({time.monotonic() - started:.0f} s so far; once per worker "
                          "process, up to a minute)")
        await asyncio.sleep(MODEL_LOADING_TICK_SECONDS)


@dataclass
class Build:
    """One attempt at building one version of a vector database."""

    ctx: JobContext
    vectors: VectorStore
    vdb: VectorDatabase
    build_id: UUID
    dataset: Dataset
    documents: list[DocumentInfo]
    embedder: Embedder
    batch_size: int
    note: str = ""
    # Bytes of chunk text and vectors written (or copied) so far: the database's size.
    size_bytes: int = 0

    async def run(self) -> ResultLocation:
        parent = await self._parent()
        chunking = chunking_key(self.vdb)
        if parent is not None and chunking_key(parent) != chunking:
            raise PermanentError(f"the parent {parent.id} embeds or chunks differently: a "
                                 "version keeps its family's model and chunking")
        records = await self.vectors.document_records(parent.id) if parent else []
        plan = plan_version(records, await self._digests(), self.vdb.update_mode)
        changes = plan.changes()
        written = await self._write_chunks(plan, parent, changes)
        sources = await self._sources(parent, written, chunking)
        await self._write_vectors(parent, written, sources, changes)
        outcome = BuildOutcome(written.total, self.size_bytes, written.records,
                               written.skipped, changes.as_json(),
                               None if parent is None else parent.id)
        active = await self.vectors.finish_build(self.vdb.id, self.build_id, outcome)
        result = {"vectorDatabaseId": str(self.vdb.id), "chunkCount": written.total,
                  "dimensions": self.vdb.dimensions, "documents": len(written.records),
                  "skippedDocuments": written.skipped_now,
                  "attempt": self.ctx.attempt, "version": self.vdb.version,
                  "reusedChunks": written.total - changes.embedded,
                  "embeddedChunks": changes.embedded, "changes": changes.as_json(),
                  "active": active}
        return ResultLocation(self.vdb.url, result)

    async def _parent(self) -> VectorDatabase | None:
        if self.vdb.parent_id is None:
            return None
        try:
            parent = await self.vectors.get_vector_database(self.vdb.parent_id, None)
        except VectorDatabaseNotFound as exc:
            raise PermanentError(f"the parent {exc}: a new version starts from its "
                                 "parent's chunks") from exc
        if not parent.is_built:
            raise PermanentError(f"the parent vector database {parent.id} is no longer "
                                 "built: a new version starts from its parent's chunks")
        return parent

    async def _digests(self) -> list[tuple[DocumentInfo, str]]:
        """Each document with its digest; a file uploaded before digests were kept at
        upload is read and hashed here."""
        digests = []
        for info in self.documents:
            content_digest = info.content_digest
            if content_digest is None:
                content = await self._read(self.dataset.id, info)
                content_digest = await asyncio.to_thread(sha256_of, content)
            digests.append((info, document_digest(info, content_digest)))
        return digests

    async def discard(self) -> None:
        try:
            await asyncio.shield(self.vectors.discard_build(self.vdb.id, self.build_id))
        except Exception as exc:  # the next attempt or a delete clears it anyway
            log.warning("vector database %s: partial build not discarded: %s", self.vdb.id, exc)

    async def _write_chunks(self, plan: Plan, parent: VectorDatabase | None,
                            changes: Changes) -> Written:
        """Write the version's chunk rows in order: a kept document's copied from the
        parent, a made one's chunked from its bytes."""
        written = Written()
        chunking = Chunking(self.vdb.chunk_size, self.vdb.chunk_overlap, self.vdb.separators)
        made_count = sum(isinstance(step, Make) for step in plan.steps)
        made = 0
        for ordinal, step in enumerate(plan.steps):
            if isinstance(step, Keep):
                record = step.record
                written.copies.append((record.first_seq, record.chunk_count, written.total))
                written.add(DocumentRecord(ordinal, record.name, record.kind, record.digest,
                                           written.total, record.chunk_count))
                if len(written.copies) >= COPIES_PER_WRITE:
                    await self._copy(parent, written)
                continue
            chunks = await self._chunks_of(step.document, chunking)
            for first in range(0, len(chunks), CHUNK_WRITE_BATCH):
                batch = chunks[first:first + CHUNK_WRITE_BATCH]
                await self.vectors.add_chunks(self.vdb.id, self.build_id,
                                              written.total + first, batch)
                self.size_bytes += sum(len(chunk.text.encode()) for chunk in batch)
            for offset, chunk in enumerate(chunks):
                written.made[written.total + offset] = chunk.content_key
            info = step.document
            written.add(DocumentRecord(ordinal, info.name, info.kind, step.digest,
                                       written.total, len(chunks)), made=True)
            if step.replaces is None:
                changes.chunks.added += len(chunks)
            else:
                changes.chunks.updated += len(chunks)
            made += 1
            self.ctx.progress(READING_SHARE * made / max(made_count, 1),
                              f"{self.note}read {made:,} of {made_count:,} new or changed "
                              f"documents ({changes.chunks.added + changes.chunks.updated:,} "
                              "chunks)")
        await self._copy(parent, written)
        self._carry_parent_skipped(parent, written)
        if written.total == 0:
            raise PermanentError(f"no text to index in dataset {self.dataset.id}: "
                                 f"{', '.join(document.name for document in written.skipped)} "
                                 "have none")
        return written

    def _carry_parent_skipped(self, parent: VectorDatabase | None, written: Written) -> None:
        """A parent built before document records were kept lists its documents without
        text only in its skippedDocuments: an added version keeps listing them."""
        if parent is None or self.vdb.update_mode is not UpdateMode.ADD:
            return
        names = {record.name for record in written.records}
        written.skipped.extend(document for document in parent.skipped_documents
                               if document.name not in names)

    async def _copy(self, parent: VectorDatabase | None, written: Written) -> None:
        ranges = [CopiedRange(*each) for each in merged_ranges(written.copies)]
        written.copied.extend(ranges)
        written.copies.clear()
        if ranges:
            assert parent is not None
            try:
                self.size_bytes += await self.vectors.copy_chunk_ranges(
                    self.vdb.id, self.build_id, parent.id, ranges)
            except VectorDatabaseNotFound as exc:
                raise PermanentError(f"the parent {exc} (or it is no longer built): a new "
                                     "version starts from its parent's chunks") from exc

    async def _chunks_of(self, info: DocumentInfo, chunking: Chunking) -> list[NewChunk]:
        content = await self._read(self.dataset.id, info)
        document = Document(info.name, info.kind, content, info.metadata)
        key = chunking_key(self.vdb)
        try:
            return await _in_thread(self.ctx, lambda: chunk_document(
                document, self.embedder, chunking, key))
        except ExtractionFailed as exc:
            raise PermanentError(f"{info.name}: {exc}") from exc

    async def _read(self, dataset_id: UUID, info: DocumentInfo) -> bytes:
        try:
            return await self.vectors.read_document(dataset_id, info.position)
        except DatasetNotFound as exc:
            raise PermanentError(f"{exc}: it was deleted during the build") from exc

    async def _sources(self, parent: VectorDatabase | None, written: Written,
                       chunking: str) -> Sources:
        """Where each chunk's vector comes from: the parent's row, another version of the
        family, or the model."""
        import numpy as np

        sources = Sources(np.full(written.total, -1, dtype=np.int64))
        for each in written.copied:
            sources.parent_rows[each.first_seq:each.first_seq + each.count] = np.arange(
                each.parent_first, each.parent_first + each.count)
        if not written.made:
            return sources
        in_parent: dict[str, int] = {}
        if parent is not None:
            for seq, key, text in await self.vectors.chunk_keys(parent.id):
                in_parent.setdefault(key or content_key(chunking, text or ""), seq)
        wanted = sorted({key for key in written.made.values() if key not in in_parent})
        elsewhere = await self.vectors.family_chunks(self.vdb.family_id, wanted)
        by_version: dict[UUID, list[int]] = {}
        for vdb_id, seq in elsewhere.values():
            by_version.setdefault(vdb_id, []).append(seq)
        found: dict[tuple[UUID, int], bytes] = {}
        for vdb_id, seqs in by_version.items():
            found.update(((vdb_id, seq), vector) for seq, vector
                         in (await self.vectors.vectors_at(vdb_id, seqs)).items())
        for seq, key in written.made.items():
            if key in in_parent:
                sources.parent_rows[seq] = in_parent[key]
            elif key in elsewhere and elsewhere[key] in found:
                sources.family[key] = found[elsewhere[key]]
            else:
                sources.uses[key] = sources.uses.get(key, 0) + 1
        return sources

    async def _write_vectors(self, parent: VectorDatabase | None, written: Written,
                             sources: Sources, changes: Changes) -> None:
        """Write the version's vectors in seq order, group by group: copied from the
        parent, found in the family, or embedded (each new text once)."""
        import numpy as np

        from genai_jobs.vectors.search import load_matrix

        parent_matrix = None
        if parent is not None and bool((sources.parent_rows >= 0).any()):
            parent_matrix = await load_matrix(self.vectors, parent)
        to_embed = len(sources.uses)
        changes.embedded = to_embed
        changes.reused = changes.chunks.added + changes.chunks.updated - to_embed
        embedded: dict[str, Vector] = {}
        first = 0
        while first < written.total:  # bounded: every group takes at least one chunk
            end, pending = self._group(first, written, sources, embedded)
            if pending:
                texts = await self.vectors.chunk_texts_at(self.vdb.id, list(pending.values()))
                keys = list(pending)
                matrix = await _in_thread(self.ctx, functools.partial(
                    self.embedder.embed, [texts[pending[key]] for key in keys],
                    should_stop=lambda: self.ctx.cancelled))
                embedded.update(zip(keys, matrix.astype(np.float32), strict=True))
            block = self._vectors_of(first, end, written, sources, parent_matrix, embedded)
            data = block.astype("<f4", copy=False).tobytes()
            await self.vectors.add_vectors(self.vdb.id, self.build_id, first, end - first, data)
            self.size_bytes += len(data)
            first = end
            done = to_embed - len(sources.uses)
            message = f"{self.note}embedded {done:,} of {to_embed:,} chunks"
            if to_embed < written.total:  # the others' vectors are reused
                message += f"; {first:,} of {written.total:,} vectors written"
            self.ctx.progress(READING_SHARE + (1 - READING_SHARE) * first / written.total,
                              message)

    def _group(self, first: int, written: Written, sources: Sources,
               embedded: dict[str, Vector]) -> tuple[int, dict[str, int]]:
        """The next group of chunks, [first, end), and the texts to embed for it (key to
        the seq of a chunk with that text): at most GROUP_CHUNKS chunks, of which at
        most one model batch needs the model."""
        pending: dict[str, int] = {}
        end = first
        while end < written.total and end - first < GROUP_CHUNKS:
            if sources.parent_rows[end] < 0:
                key = written.made[end]
                if key not in embedded and key not in sources.family and key not in pending:
                    if len(pending) == self.batch_size:
                        break
                    pending[key] = end
            end += 1
        return end, pending

    def _vectors_of(self, first: int, end: int, written: Written, sources: Sources,
                    parent_matrix: Matrix | None, embedded: dict[str, Vector]) -> Matrix:
        import numpy as np

        block = np.empty((end - first, self.vdb.dimensions), dtype=np.float32)
        rows = sources.parent_rows[first:end]
        from_parent = rows >= 0
        if from_parent.any():
            assert parent_matrix is not None
            block[from_parent] = parent_matrix[rows[from_parent]]
        for offset in np.flatnonzero(~from_parent):
            key = written.made[first + int(offset)]
            if key in sources.family:
                block[offset] = np.frombuffer(sources.family[key], dtype="<f4")
                continue
            block[offset] = embedded[key]
            sources.uses[key] -= 1
            if sources.uses[key] == 0:  # its last chunk: let the vector go
                del sources.uses[key]
                del embedded[key]
        return block


@dataclass
class Written:
    """The chunk rows of the version, as written: its document records in order."""

    total: int = 0
    records: list[DocumentRecord] = field(default_factory=list)
    skipped: list[SkippedDocument] = field(default_factory=list)
    skipped_now: list[str] = field(default_factory=list)  # of documents read this time
    # Ranges of the parent's chunks to copy, not yet written, and those written.
    copies: list[tuple[int, int, int]] = field(default_factory=list)
    copied: list[CopiedRange] = field(default_factory=list)
    # The content key of every chunk made (not copied), by seq.
    made: dict[int, str] = field(default_factory=dict)

    def add(self, record: DocumentRecord, made: bool = False) -> None:
        self.records.append(record)
        self.total += record.chunk_count
        if record.chunk_count == 0:
            self.skipped.append(SkippedDocument(record.name, NO_TEXT[record.kind]))
            if made:
                self.skipped_now.append(record.name)


@dataclass
class Sources:
    """Where each chunk's vector comes from: `parent_rows[seq]` is the parent's row that
    has it (-1: none); `family` holds vectors found in other versions by key; `uses`
    counts the chunks of each key that need the model (until its vector is written)."""

    parent_rows: npt.NDArray[Any]
    family: dict[str, bytes] = field(default_factory=dict)
    uses: dict[str, int] = field(default_factory=dict)


def chunk_document(document: Document, embedder: Embedder, chunking: Chunking,
                   key: str) -> list[NewChunk]:
    """The document's chunks in order, with their content keys under chunking `key`; a
    PDF's are cut page by page."""
    extracted = extract(document)
    chunks: list[NewChunk] = []
    for page, start, end in extracted.segments():
        for span, text in chunk_text(extracted.text[start:end], embedder.token_offsets,
                                     chunking):
            chunks.append(NewChunk(document.name, len(chunks), page, start + span.start_char,
                                   start + span.end_char, text, document.metadata,
                                   content_key(key, text), document.kind))
    return chunks


async def _in_thread(ctx: JobContext, work: Callable[[], T]) -> T:
    """Run blocking `work` in a thread. The worker stops a handler by cancelling it;
    the thread cannot be cancelled, but sees `ctx.cancelled` between model passes:
    wait for it, so that ABORTED and EXPIRED mean the work has stopped."""
    future = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # seen here: it is the stop we asked for
        raise

