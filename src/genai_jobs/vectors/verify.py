"""The `vectorDatabase.verify` job: does a built version's index hold exactly what its
records say, with the right vectors? Drift is reported by kind, count and example.

What is checked, batch of vectors by batch, in seq order (memory stays bounded):

- every chunk has one vector and every vector one chunk (no gap, no overlap, nothing
  past the chunk count);
- the document records cover the chunks in order, each chunk naming its record's
  document;
- each chunk's content key is the key of its text under the version's model and
  chunking (so reuse by key can be trusted), and chunks of one key have one vector;
- every vector is finite and of unit length;
- a sample of chunks (`reembed`, spread over the version; all of them if asked)
  embedded again by the model comes out the same (cosine >= 0.99).

The job COMPLETES with the report in its result (`ok` false if any drift); it
fails only when it cannot check (the version is gone or not built).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from genai_jobs.handlers import JobContext, JobType, PermanentError, Registry, ResultLocation
from genai_jobs.vectors.build import in_thread, job_and_store, load_model
from genai_jobs.vectors.embeddings import Embedder, unavailable_reason
from genai_jobs.vectors.plan import chunking_key, content_key
from genai_jobs.vectors.records import DocumentRecord, VectorDatabase, VectorDatabaseNotFound
from genai_jobs.vectors.store import VectorStore

if TYPE_CHECKING:
    import numpy.typing as npt

JOB_TYPE = "vectorDatabase.verify"
DEFAULT_REEMBED = 64
# Drift examples kept per kind: enough to find the fault, few enough to read.
EXAMPLES = 5
UNIT_TOLERANCE = 1e-3
SAME_VECTOR_COSINE = 0.99

registry = Registry()


class VerifyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vectorDatabaseId: UUID = Field(description="The version to check (COMPLETED).")
    reembed: int = Field(default=DEFAULT_REEMBED, ge=-1, description="How many chunks, spread "
                         "over the version, to embed again and compare with their stored "
                         "vectors; -1 for every chunk.")
    full: bool = Field(default=False, description="Embed every chunk again (as long as a "
                       "build of the version).")


@dataclass
class Drift:
    """Findings of one kind: how many, and the first few described."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str, count: int = 1) -> None:
        self.count += count
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class Report:
    drift: dict[str, Drift] = field(default_factory=dict)
    reembedded: int = 0

    def found(self, kind: str, example: str, count: int = 1) -> None:
        self.drift.setdefault(kind, Drift()).add(example, count)

    def as_json(self, vdb: VectorDatabase, documents: int) -> dict[str, Any]:
        return {"vectorDatabaseId": str(vdb.id), "version": vdb.version,
                "ok": not self.drift, "chunks": vdb.chunk_count, "documents": documents,
                "reembedded": self.reembedded,
                "drift": [{"kind": kind, "count": drift.count, "examples": drift.examples}
                          for kind, drift in sorted(self.drift.items())]}


async def verify_vector_database(ctx: JobContext, payload: VerifyPayload) -> ResultLocation:
    """Check that a version's index holds exactly what its records list."""
    job, vectors = await job_and_store(ctx, JOB_TYPE)
    try:
        vdb = await vectors.get_vector_database(payload.vectorDatabaseId, job.tenant)
    except VectorDatabaseNotFound as exc:
        raise PermanentError(str(exc)) from exc
    if not vdb.is_built:
        raise PermanentError(f"vector database {vdb.id} is not built: only a COMPLETED "
                             "version can be verified")
    embedder = await load_model(ctx, vdb.embedding_model, "")
    records = await vectors.document_records(vdb.id)
    check = Check(ctx, vectors, vdb, embedder, records,
                  -1 if payload.full else payload.reembed)
    report = await check.run()
    result = report.as_json(vdb, len(records))
    kinds = ", ".join(f"{item['count']:,} {item['kind']}" for item in result["drift"])
    ctx.progress(1.0, f"found drift: {kinds}" if kinds else
                 f"no drift in {vdb.chunk_count:,} chunks")
    return ResultLocation(vdb.url, result)


registry.add(JobType(
    JOB_TYPE, "Verify a vector database: every chunk its records list is in its index, with "
    "the right vector, and nothing else.", VerifyPayload, verify_vector_database,
    unavailable_reason=unavailable_reason()))


@dataclass
class Check:
    ctx: JobContext
    vectors: VectorStore
    vdb: VectorDatabase
    embedder: Embedder
    records: list[DocumentRecord]
    reembed: int
    report: Report = field(default_factory=Report)
    next_seq: int = 0  # the seq the next batch of vectors should start at
    # Content key -> a digest of its vector (to find one key with two vectors).
    key_vectors: dict[str, bytes] = field(default_factory=dict)

    async def run(self) -> Report:
        self._check_records()
        chunking = chunking_key(self.vdb)
        sampled = set(_spread(self.vdb.chunk_count, self.reembed))
        owner = _owners(self.records)
        async for first_seq, count, data in self.vectors.vector_batches(self.vdb.id):
            await self._check_batch(first_seq, count, data, chunking, sampled, owner)
            self.ctx.progress(min(1.0, (first_seq + count) / max(self.vdb.chunk_count, 1)),
                              f"checked {first_seq + count:,} of {self.vdb.chunk_count:,} "
                              "chunks")
        if self.next_seq < self.vdb.chunk_count:
            self.report.found("missing_vectors", f"chunks {self.next_seq}.."
                              f"{self.vdb.chunk_count - 1} have no vector",
                              self.vdb.chunk_count - self.next_seq)
        await self._check_rows_past_the_end()
        return self.report

    def _check_records(self) -> None:
        if not _recorded(self.records):
            self.report.found("no_document_records", "the version was built before its "
                              "documents were recorded: update it to record them")
            return
        expected = 0
        for record in self.records:
            if record.first_seq != expected:
                self.report.found("records_out_of_order", f"document {record.name!r} starts "
                                  f"at chunk {record.first_seq}, expected {expected}")
            expected = record.first_seq + record.chunk_count
        if expected != self.vdb.chunk_count:
            self.report.found("records_count", f"the records list {expected:,} chunks, the "
                              f"version {self.vdb.chunk_count:,}")

    async def _check_batch(self, first_seq: int, count: int, data: bytes, chunking: str,
                           sampled: set[int], owner: dict[int, str]) -> None:
        import numpy as np

        if first_seq != self.next_seq:
            kind = "overlapping_vectors" if first_seq < self.next_seq else "missing_vectors"
            self.report.found(kind, f"a batch of vectors starts at chunk {first_seq}, "
                              f"expected {self.next_seq}", abs(first_seq - self.next_seq))
        self.next_seq = max(self.next_seq, first_seq + count)
        if first_seq + count > self.vdb.chunk_count:
            self.report.found("extra_vectors", f"vectors up to chunk {first_seq + count - 1} "
                              f"in a version of {self.vdb.chunk_count:,} chunks",
                              first_seq + count - max(first_seq, self.vdb.chunk_count))
        matrix = np.frombuffer(data, dtype="<f4").reshape(count, self.vdb.dimensions)
        chunks = {chunk.seq: chunk for chunk in
                  await self.vectors.chunk_range(self.vdb.id, first_seq, count)}
        keys = await self.vectors.chunk_keys(self.vdb.id, first_seq, count)
        for row, vector in enumerate(matrix):
            seq = first_seq + row
            chunk = chunks.get(seq)
            if chunk is None:
                if seq < self.vdb.chunk_count:
                    self.report.found("missing_chunks", f"chunk {seq} has a vector, no row")
                continue
            self._check_vector(seq, vector)
            self._check_key(seq, chunk.text, keys.get(seq), chunking, vector)
            if owner and owner.get(seq) != chunk.document:
                self.report.found("chunk_document", f"chunk {seq} names {chunk.document!r}, "
                                  f"its record {owner.get(seq)!r}")
        await self._reembed(matrix, first_seq, chunks, sampled)

    def _check_vector(self, seq: int, vector: npt.NDArray[Any]) -> None:
        norm = float((vector.astype("f8") ** 2).sum()) ** 0.5
        if not math.isfinite(norm) or abs(norm - 1.0) > UNIT_TOLERANCE:
            self.report.found("bad_vectors", f"chunk {seq}'s vector has length {norm:.4g}, "
                              "not 1")

    def _check_key(self, seq: int, text: str, key: str | None, chunking: str,
                   vector: npt.NDArray[Any]) -> None:
        expected = content_key(chunking, text)
        if key is None:
            self.report.found("no_content_key", f"chunk {seq} has no content key")
        elif key != expected:
            self.report.found("wrong_content_key", f"chunk {seq}'s content key is not its "
                              "text's: its vector would be reused for other text")
        digest = hashlib.blake2b(vector.round(5).tobytes(), digest_size=8).digest()
        seen = self.key_vectors.setdefault(expected, digest)
        if seen != digest:
            self.report.found("one_text_two_vectors", f"chunk {seq} has another vector than "
                              "an earlier chunk of the same text")

    async def _reembed(self, matrix: npt.NDArray[Any], first_seq: int,
                       chunks: dict[int, Any], sampled: set[int]) -> None:
        import numpy as np

        seqs = [seq for seq in range(first_seq, first_seq + len(matrix))
                if seq in sampled and seq in chunks]
        if not seqs:
            return
        fresh = await in_thread(self.ctx, lambda: self.embedder.embed(
            [chunks[seq].text for seq in seqs], should_stop=lambda: self.ctx.cancelled))
        for seq, vector in zip(seqs, fresh, strict=True):
            stored = matrix[seq - first_seq]
            cosine = float(np.dot(stored, vector) / (np.linalg.norm(stored) *
                                                      np.linalg.norm(vector) or 1.0))
            if not cosine >= SAME_VECTOR_COSINE:
                self.report.found("wrong_vectors", f"chunk {seq}'s stored vector is not its "
                                  f"text's (cosine {cosine:.3f} to the text embedded again)")
        self.report.reembedded += len(seqs)

    async def _check_rows_past_the_end(self) -> None:
        extra = await self.vectors.chunk_range(self.vdb.id, self.vdb.chunk_count, 1 << 30)
        if extra:
            self.report.found("extra_chunks", f"chunk rows {extra[0].seq}..{extra[-1].seq} "
                              f"past the version's {self.vdb.chunk_count:,} chunks", len(extra))


def _recorded(records: list[DocumentRecord]) -> bool:
    """Whether the version's documents were recorded at its build (rows.legacy_records
    makes digest-less ones from the chunks of a version built before)."""
    return bool(records) and records[0].digest != ""


def _owners(records: list[DocumentRecord]) -> dict[int, str]:
    """The document each chunk belongs to, by the records (none for legacy versions)."""
    if not _recorded(records):
        return {}
    return {seq: record.name for record in records
            for seq in range(record.first_seq, record.first_seq + record.chunk_count)}


def _spread(total: int, wanted: int) -> Iterable[int]:
    """`wanted` seqs spread evenly over `total` (all of them if wanted >= total or < 0)."""
    if wanted < 0 or wanted >= total:
        return range(total)
    if wanted == 0:
        return ()
    return {round(at * (total - 1) / max(wanted - 1, 1)) for at in range(wanted)}
