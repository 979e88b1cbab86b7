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
from typing import TYPE_CHECKING, TypeVar
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
    from genai_jobs.vectors.index import Matrix

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
# Chunks given content keys per pass over a parent written before keys were kept.
KEYS_PER_PASS = 5000
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


async def job_and_store(ctx: JobContext, job_type: str) -> tuple[Job, VectorStore]:
    """The running job and the vector store, for a job that needs the model; a
    PermanentError where it cannot run."""
    reason = unavailable_reason()
    if reason is not None:
        raise PermanentError(f"{job_type} {reason}")
    store = ctx.store
    if store is None:
        raise PermanentError(f"{job_type} runs in a worker of genai-jobs (no store given)")
    return await store.get(ctx.job_id), vector_store_for(store)


async def build_vector_database(ctx: JobContext, payload: BuildPayload) -> ResultLocation:
    """Build a vector database: extract, chunk and embed its dataset's documents."""
    job, vectors = await job_and_store(ctx, JOB_TYPE)
    build = await _start(ctx, vectors, job, payload.vectorDatabaseId)
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
    embedder = await load_model(ctx, vdb.embedding_model, note)
    assert vdb.build_id is not None
    return Build(ctx, vectors, vdb, vdb.build_id, dataset, documents, embedder,
                 vector_settings().vector_build_batch_size, note)


async def load_model(ctx: JobContext, name: str, note: str) -> Embedder:
    """The model, loaded in a thread on first use in this process, saying so meanwhile."""
    if is_loaded(name):  # at hand: nothing worth saying
        return await in_thread(ctx, lambda: get_embedder(name))
    saying = asyncio.ensure_future(_say_loading(ctx, name, note))
    try:
        return await in_thread(ctx, lambda: get_embedder(name))
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
    look_up: bool = True  # whether the family may hold vectors of the chunks made

    @functools.cached_property
    def chunking(self) -> str:
        """The version's chunking key (plan.chunking_key): its chunks' content keys."""
        return chunking_key(self.vdb)

    async def run(self) -> ResultLocation:
        parent = await self._parent()
        chunking = self.chunking
        if parent is not None and chunking_key(parent) != chunking:
            raise PermanentError(f"the parent {parent.id} embeds or chunks differently: a "
                                 "version keeps its family's model and chunking")
        records = []
        if parent is not None:
            records = await self.vectors.document_records(parent.id)
            await self._key_chunks(parent, chunking)
        plan = plan_version(records, await self._digests(), self.vdb.update_mode)
        changes = plan.changes()
        written = await self._write_chunks(plan, parent, changes)
        await self._write_vectors(parent, written, changes)
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
                content = await self._read(info)
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
        content = await self._read(info)
        document = Document(info.name, info.kind, content, info.metadata)
        try:
            return await in_thread(self.ctx, lambda: chunk_document(
                document, self.embedder, chunking, self.chunking))
        except ExtractionFailed as exc:
            raise PermanentError(f"{info.name}: {exc}") from exc

    async def _read(self, info: DocumentInfo) -> bytes:
        try:
            return await self.vectors.read_document(self.dataset.id, info.position)
        except DatasetNotFound as exc:
            raise PermanentError(f"{exc}: it was deleted during the build") from exc

    async def _key_chunks(self, parent: VectorDatabase, chunking: str) -> None:
        """Give content keys to the parent's chunks written before keys were kept (a key
        is a function of the text: writing it changes nothing the parent answers)."""
        after = -1
        while True:  # bounded: each pass moves past the chunks it keyed, or stops
            texts = await self.vectors.chunks_without_keys(parent.id, after, KEYS_PER_PASS)
            if not texts:
                return
            await self.vectors.set_content_keys(
                parent.id, [(seq, content_key(chunking, text)) for seq, text in texts])
            after = texts[-1][0]

    async def _write_vectors(self, parent: VectorDatabase | None, written: Written,
                             changes: Changes) -> None:
        """Write the version's vectors in seq order, a group at a time: copied from the
        parent, found in the family (or earlier in this build), or embedded. Memory stays
        bounded by the group, however large the version."""
        made = changes.chunks.added + changes.chunks.updated
        progress = Progress(self, made, written.total)
        # A family's first build has nothing to look up: the index lookups would only
        # cost it (their pages stay mapped in the worker), so it looks for twins of a
        # chunk only in the chunk's own group.
        # (A family has an active version from its first built one on.)
        family = await self.vectors.get_family(self.vdb.family_id, None)
        self.look_up = family.active_id is not None
        first, window = 0, GROUP_CHUNKS
        while first < written.total:  # bounded: every group takes at least one chunk
            embedded = progress.embedded
            end, block = await self._vectors_of(
                first, min(first + window, written.total), parent, written.copied, progress)
            # Where the model is needed, look a few batches ahead, not a whole group.
            window = GROUP_CHUNKS if progress.embedded == embedded else 4 * self.batch_size
            data = block.astype("<f4", copy=False).tobytes()
            await self.vectors.add_vectors(self.vdb.id, self.build_id, first, end - first, data)
            self.size_bytes += len(data)
            first = end
            progress.say(first)
        changes.embedded = progress.embedded
        changes.reused = made - progress.embedded

    async def _vectors_of(self, first: int, end: int, parent: VectorDatabase | None,
                          copied: list[CopiedRange], progress: Progress) -> tuple[int, Matrix]:
        """The vectors of the next group of chunks from `first`: up to `end`, or before
        the chunk that would take a second model pass (so that a group is committed per
        model batch, as progress says)."""
        import numpy as np

        block = np.full((end - first, self.vdb.dimensions), np.nan, dtype=np.float32)
        from_parent = {seq: each.parent_first + seq - each.first_seq for each in copied
                       for seq in range(max(first, each.first_seq),
                                        min(end, each.first_seq + each.count))}
        if from_parent:
            assert parent is not None
            self._fill(block, first, from_parent, await self.vectors.vectors_at(
                parent.id, list(from_parent.values())))
        keys = {seq: key for seq, key in (await self.vectors.chunk_keys(
            self.vdb.id, first, end - first)).items() if seq not in from_parent}
        vectors = (await self._known_vectors(set(keys.values()), first) if self.look_up
                   else {})
        missing: dict[str, int] = {}  # key -> its first seq, in seq order
        for seq in sorted(keys):
            key = keys[seq]
            if key not in vectors and key not in missing:
                if len(missing) == self.batch_size:
                    end = seq
                    break
                missing[key] = seq
        if missing:
            vectors.update(await self._embed(missing))
            progress.embedded += len(missing)
        progress.made_done += sum(seq < end for seq in keys)
        block = block[:end - first]
        for seq, key in keys.items():
            if seq < end:
                block[seq - first] = np.frombuffer(vectors[key], dtype="<f4")
        if np.isnan(block).any():  # a chunk row missing: never write a partial index
            raise RuntimeError(f"vector database {self.vdb.id}: chunks {first}..{end - 1} "
                               "are not all written")
        return end, block

    @staticmethod
    def _fill(block: Matrix, first: int, where: dict[int, int], found: dict[int, bytes]) -> None:
        import numpy as np

        for seq, source in where.items():
            block[seq - first] = np.frombuffer(found[source], dtype="<f4")

    async def _known_vectors(self, keys: set[str], before: int) -> dict[str, bytes]:
        """Vectors for these content keys that the family, or this build before chunk
        `before`, already has."""
        wanted = sorted(keys)
        located: dict[str, tuple[UUID, int]] = dict(
            await self.vectors.family_chunks(self.vdb.family_id, wanted))
        rest = [key for key in wanted if key not in located]
        if rest:
            located.update((key, (self.vdb.id, seq)) for key, seq in
                           (await self.vectors.earlier_chunks(self.vdb.id, rest, before)).items())
        by_version: dict[UUID, list[tuple[str, int]]] = {}
        for key, (vdb_id, seq) in located.items():
            by_version.setdefault(vdb_id, []).append((key, seq))
        vectors: dict[str, bytes] = {}
        for vdb_id, pairs in by_version.items():
            found = await self.vectors.vectors_at(vdb_id, [seq for _, seq in pairs])
            vectors.update((key, found[seq]) for key, seq in pairs if seq in found)
        return vectors

    async def _embed(self, seq_of: dict[str, int]) -> dict[str, bytes]:
        """One model pass over the texts of these content keys (each at a seq of its)."""
        texts = await self.vectors.chunk_texts_at(self.vdb.id, list(seq_of.values()))
        matrix = await in_thread(self.ctx, functools.partial(
            self.embedder.embed, [texts[seq] for seq in seq_of.values()],
            should_stop=lambda: self.ctx.cancelled))
        rows = matrix.astype("<f4", copy=False)
        return {key: rows[at].tobytes() for at, key in enumerate(seq_of)}


@dataclass
class Progress:
    """The vectors' progress, said after each group written. How many chunks will need
    the model is known only as they are looked up, so a build says how many of the
    chunks it made have their vectors (and how many of those the model made)."""

    build: Build
    made: int  # chunks made from documents (the others are copied from the parent)
    total: int
    embedded: int = 0
    made_done: int = 0

    def say(self, written: int) -> None:
        reused = self.made_done - self.embedded
        if self.made == self.total:
            message = f"embedded {self.made_done:,} of {self.made:,} chunks"
            if reused:
                message += f" ({reused:,} of them found already embedded)"
        else:
            message = (f"{written:,} of {self.total:,} vectors written: "
                       f"{self.embedded:,} chunks embedded, {reused:,} reused, "
                       f"{written - self.made_done:,} copied")
        self.build.ctx.progress(READING_SHARE + (1 - READING_SHARE) * written / self.total,
                                self.build.note + message)


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

    def add(self, record: DocumentRecord, made: bool = False) -> None:
        self.records.append(record)
        self.total += record.chunk_count
        if record.chunk_count == 0:
            self.skipped.append(SkippedDocument(record.name, NO_TEXT[record.kind]))
            if made:
                self.skipped_now.append(record.name)


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


async def in_thread(ctx: JobContext, work: Callable[[], T]) -> T:
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

