"""The `vectorDatabase.build` job: a dataset's documents in, a searchable index out.

Extract each document's text, cut it into token chunks, write the chunks in
batches; then embed them in batches, writing each batch of vectors as it is
done and reporting "embedded 1,200 of 5,000 chunks". Stops (abort, deadline,
shutdown) are honoured between model passes.

A new version of a vector database (one with a parent) starts with a copy of its
parent's chunks and vectors, made in one transaction, and embeds only the chunks
of its own dataset after them: the parent's are never embedded again.

A retry starts over: its first write deletes whatever an earlier attempt left,
and the build id fences out that attempt should it still be running (a worker
that lost its lease). Resuming from committed batches would save work, but
every batch would then have to prove it came from the same dataset, model and
chunking as the ones before it; starting over makes a mixed index impossible
by construction, at the price of repeating at most one attempt's work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from genai_jobs.domain import Job
from genai_jobs.handlers import JobContext, JobType, PermanentError, Registry, ResultLocation
from genai_jobs.vectors.chunking import Chunking, chunk_text
from genai_jobs.vectors.embeddings import Embedder, get_embedder, is_loaded, unavailable_reason
from genai_jobs.vectors.extract import ExtractionFailed, extract
from genai_jobs.vectors.records import (
    BuildSuperseded,
    Dataset,
    DatasetNotFound,
    Document,
    DocumentInfo,
    DocumentKind,
    NewChunk,
    SkippedDocument,
    VectorDatabase,
    VectorDatabaseNotFound,
)
from genai_jobs.vectors.settings import vector_settings
from genai_jobs.vectors.store import VectorStore, vector_store_for

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
    """One attempt at building one vector database."""

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
        reused, inherited = await self._copy_parent()
        total, skipped = await self._write_chunks(self.dataset, reused)
        await self._embed(reused, total)
        await self.vectors.finish_build(self.vdb.id, self.build_id, total, self.size_bytes,
                                        [*inherited, *skipped])
        result = {"vectorDatabaseId": str(self.vdb.id), "chunkCount": total,
                  "dimensions": self.vdb.dimensions, "documents": len(self.documents),
                  "skippedDocuments": [document.name for document in skipped],
                  "attempt": self.ctx.attempt, "version": self.vdb.version,
                  "reusedChunks": reused, "embeddedChunks": total - reused}
        return ResultLocation(self.vdb.url, result)

    async def _copy_parent(self) -> tuple[int, tuple[SkippedDocument, ...]]:
        """The parent's chunks and vectors, copied as this build's first ones: how many,
        and the documents the parent left out (this version leaves them out too)."""
        if self.vdb.parent_id is None:
            return 0, ()
        try:
            parent = await self.vectors.get_vector_database(self.vdb.parent_id, None)
            copied, self.size_bytes = await self.vectors.copy_chunks(
                self.vdb.id, self.build_id, self.vdb.parent_id)
        except VectorDatabaseNotFound as exc:
            raise PermanentError(f"the parent {exc} (or it is no longer built): a new "
                                 "version starts from its parent's chunks") from exc
        self.ctx.progress(0.0, f"{self.note}reused {copied:,} chunks of the parent "
                               f"{self.vdb.parent_id}")
        return copied, parent.skipped_documents

    async def discard(self) -> None:
        try:
            await asyncio.shield(self.vectors.discard_build(self.vdb.id, self.build_id))
        except Exception as exc:  # the next attempt or a delete clears it anyway
            log.warning("vector database %s: partial build not discarded: %s", self.vdb.id, exc)

    async def _write_chunks(self, dataset: Dataset,
                            first_seq: int) -> tuple[int, list[SkippedDocument]]:
        """Chunk every document and store the chunks after the first `first_seq` ones;
        (chunks in all, documents without text)."""
        chunking = Chunking(self.vdb.chunk_size, self.vdb.chunk_overlap, self.vdb.separators)
        written, skipped = first_seq, []
        documents = self.documents
        for number, info in enumerate(documents, 1):
            chunks = await self._chunks_of(dataset.id, info, chunking)
            if not chunks:
                skipped.append(SkippedDocument(info.name, NO_TEXT[info.kind]))
            for first in range(0, len(chunks), CHUNK_WRITE_BATCH):
                batch = chunks[first:first + CHUNK_WRITE_BATCH]
                await self.vectors.add_chunks(self.vdb.id, self.build_id, written, batch)
                written += len(batch)
                self.size_bytes += sum(len(chunk.text.encode()) for chunk in batch)
            self.ctx.progress(READING_SHARE * number / len(documents),
                              f"{self.note}read {number:,} of {len(documents):,} documents "
                              f"({written - first_seq:,} chunks)")
        if written == first_seq:
            raise PermanentError(f"no text to index in dataset {dataset.id}: "
                                 f"{', '.join(document.name for document in skipped)} "
                                 "have none")
        return written, skipped

    async def _chunks_of(self, dataset_id: UUID, info: DocumentInfo,
                         chunking: Chunking) -> list[NewChunk]:
        try:
            content = await self.vectors.read_document(dataset_id, info.position)
        except DatasetNotFound as exc:
            raise PermanentError(f"{exc}: it was deleted during the build") from exc
        document = Document(info.name, info.kind, content, info.metadata)
        try:
            return await _in_thread(self.ctx, lambda: chunk_document(document, self.embedder,
                                                                     chunking))
        except ExtractionFailed as exc:
            raise PermanentError(f"{info.name}: {exc}") from exc

    async def _embed(self, first_seq: int, total: int) -> None:
        """Embed chunks `first_seq` .. `total - 1`."""
        done = first_seq
        while done < total:  # bounded: every pass embeds at least one chunk
            count = min(self.batch_size, total - done)
            texts = await self.vectors.chunk_texts(self.vdb.id, done, count)
            matrix = await _in_thread(self.ctx, functools.partial(
                self.embedder.embed, texts, should_stop=lambda: self.ctx.cancelled))
            vectors = matrix.astype("<f4", copy=False).tobytes()
            await self.vectors.add_vectors(self.vdb.id, self.build_id, done, count, vectors)
            self.size_bytes += len(vectors)
            done += count
            new, embedded = total - first_seq, done - first_seq
            self.ctx.progress(READING_SHARE + (1 - READING_SHARE) * embedded / new,
                              f"{self.note}embedded {embedded:,} of {new:,} chunks")


def chunk_document(document: Document, embedder: Embedder, chunking: Chunking) -> list[NewChunk]:
    """The document's chunks in order; a PDF's are cut page by page."""
    extracted = extract(document)
    chunks: list[NewChunk] = []
    for page, start, end in extracted.segments():
        for span, text in chunk_text(extracted.text[start:end], embedder.token_offsets,
                                     chunking):
            chunks.append(NewChunk(document.name, len(chunks), page, start + span.start_char,
                                   start + span.end_char, text, document.metadata))
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

