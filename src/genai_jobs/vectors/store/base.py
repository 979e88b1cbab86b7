"""The seam for datasets, chunks and vectors, beside the job store and on its database.

Builds are fenced: `start_build` gives the vector database a new build id and
clears what an earlier attempt wrote; every later write of the build names
that id and is refused (BuildSuperseded) once another attempt has taken over
or the vector database was deleted. So a worker that lost its lease can never
mix rows into the index, and `finish_build` is the one moment the index
becomes whole.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from uuid import UUID

from genai_jobs.vectors.records import (
    BuildOutcome,
    Chunk,
    ChunkFields,
    CopiedRange,
    Dataset,
    DocumentInfo,
    DocumentRecord,
    Family,
    NewChunk,
    NewDataset,
    NewVectorDatabase,
    Page,
    VectorDatabase,
    VectorDatabaseQuery,
)


class VectorStore(abc.ABC):
    # -- datasets ---------------------------------------------------------
    @abc.abstractmethod
    async def create_dataset(self, new: NewDataset) -> Dataset:
        """Store the dataset and all its documents in one transaction."""

    @abc.abstractmethod
    async def get_dataset(self, dataset_id: UUID, tenant: str | None) -> Dataset:
        """The dataset, if `tenant` (None: any) owns it; else DatasetNotFound."""

    @abc.abstractmethod
    async def list_datasets(self, page: Page) -> tuple[list[Dataset], int]: ...

    @abc.abstractmethod
    async def delete_dataset(self, dataset_id: UUID, tenant: str | None) -> None: ...

    @abc.abstractmethod
    async def update_dataset(self, dataset_id: UUID, tenant: str | None, name: str | None,
                             categories: Sequence[str] | None) -> Dataset:
        """Rename it and/or replace its categories (None: keep)."""

    @abc.abstractmethod
    async def documents(self, dataset_id: UUID) -> list[DocumentInfo]:
        """The dataset's documents in order, without their bytes (DatasetNotFound if gone)."""

    @abc.abstractmethod
    async def read_document(self, dataset_id: UUID, position: int) -> bytes:
        """One document's bytes (DatasetNotFound once the dataset is gone)."""

    # -- vector databases ---------------------------------------------------
    @abc.abstractmethod
    async def create_vector_database(self, new: NewVectorDatabase) -> VectorDatabase:
        """Store it as the next version of its family (1 for a new family)."""

    @abc.abstractmethod
    async def set_build_job(self, vdb_id: UUID, job_id: UUID) -> None:
        """Record the job that builds it (unless one is recorded already)."""

    @abc.abstractmethod
    async def get_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase: ...

    @abc.abstractmethod
    async def list_vector_databases(
            self, query: VectorDatabaseQuery) -> tuple[list[VectorDatabase], int]: ...

    @abc.abstractmethod
    async def count_vector_databases(self, tenant: str | None) -> int: ...

    @abc.abstractmethod
    async def rename_vector_database(self, vdb_id: UUID, tenant: str | None,
                                     name: str) -> VectorDatabase: ...

    @abc.abstractmethod
    async def delete_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        """Delete it with its chunks and vectors; returns it as it was."""

    # -- builds -------------------------------------------------------------
    @abc.abstractmethod
    async def start_build(self, vdb_id: UUID, job_id: UUID, build_id: UUID) -> VectorDatabase:
        """Take the build over for `build_id`: whatever an earlier attempt wrote is deleted.

        VectorDatabaseNotFound unless it exists and `job_id` is (or may become) its build job.
        """

    @abc.abstractmethod
    async def add_chunks(self, vdb_id: UUID, build_id: UUID, first_seq: int,
                         chunks: Sequence[NewChunk]) -> None:
        """Write chunks `first_seq`, `first_seq + 1`, ...; BuildSuperseded if not ours."""

    @abc.abstractmethod
    async def copy_chunk_ranges(self, vdb_id: UUID, build_id: UUID, parent_id: UUID,
                                ranges: Sequence[CopiedRange]) -> int:
        """Copy the built parent's chunk rows (not their vectors) `parent_first` ..
        `parent_first + count - 1` of each range as this build's `first_seq` ..; returns
        the bytes of their text. VectorDatabaseNotFound if the parent is gone or not
        built; BuildSuperseded if the build is not ours."""

    @abc.abstractmethod
    async def chunks_without_keys(self, vdb_id: UUID, after_seq: int,
                                  limit: int) -> list[tuple[int, str]]:
        """(seq, text) of up to `limit` chunks after `after_seq` written before content
        keys were kept, in seq order."""

    @abc.abstractmethod
    async def set_content_keys(self, vdb_id: UUID, keys: Sequence[tuple[int, str]]) -> None:
        """Record the content keys of chunks written without (seq, key)."""

    @abc.abstractmethod
    async def chunk_keys(self, vdb_id: UUID, first_seq: int, count: int) -> dict[int, str]:
        """The content keys of chunks `first_seq` .. `first_seq + count - 1`, by seq."""

    @abc.abstractmethod
    async def earlier_chunks(self, vdb_id: UUID, keys: Sequence[str],
                             before_seq: int) -> dict[str, int]:
        """For the keys among this database's chunks before `before_seq`: one seq each."""

    @abc.abstractmethod
    async def family_chunks(self, family_id: UUID,
                            keys: Sequence[str]) -> dict[str, tuple[UUID, int]]:
        """For the keys found in a built version of the family: one (vdb id, seq) each."""

    @abc.abstractmethod
    async def vectors_at(self, vdb_id: UUID, seqs: Sequence[int]) -> dict[int, bytes]:
        """The float32 vectors of these chunks, by seq (missing ones left out)."""

    @abc.abstractmethod
    async def chunk_texts_at(self, vdb_id: UUID, seqs: Sequence[int]) -> dict[int, str]: ...

    @abc.abstractmethod
    async def add_vectors(self, vdb_id: UUID, build_id: UUID, first_seq: int, count: int,
                          vectors: bytes) -> None:
        """Write one batch of float32 vectors; BuildSuperseded if not ours."""

    @abc.abstractmethod
    async def finish_build(self, vdb_id: UUID, build_id: UUID, outcome: BuildOutcome) -> bool:
        """In one transaction: mark the index whole as `outcome` says, record its
        documents, and make it its family's active version if the active one is its
        parent (or none); whether it did. BuildSuperseded if the build is not ours."""

    @abc.abstractmethod
    async def discard_build(self, vdb_id: UUID, build_id: UUID) -> None:
        """Delete what `build_id` wrote, if it still owns the build (else nothing)."""

    @abc.abstractmethod
    async def document_records(self, vdb_id: UUID) -> list[DocumentRecord]:
        """What the built version holds, document by document, in order (made from its
        chunks for a version built before records were kept: rows.legacy_records)."""

    # -- families -----------------------------------------------------------
    @abc.abstractmethod
    async def get_family(self, family_id: UUID, tenant: str | None) -> Family: ...

    @abc.abstractmethod
    async def family_versions(self, family_id: UUID) -> list[VectorDatabase]:
        """Every version of the family, oldest first."""

    @abc.abstractmethod
    async def set_active_version(self, family_id: UUID, vdb_id: UUID) -> Family:
        """Point the family's searches at `vdb_id`, a built version of it (else NotBuilt
        or VectorDatabaseNotFound)."""

    # -- search -------------------------------------------------------------
    @abc.abstractmethod
    def vector_batches(self, vdb_id: UUID) -> AsyncIterator[tuple[int, int, bytes]]:
        """Every batch of vectors as (first_seq, count, float32 bytes), in seq order."""

    @abc.abstractmethod
    async def keyword_search(self, vdb_id: UUID, question: str,
                             limit: int) -> list[tuple[int, float]]:
        """The built version's chunks that share terms with `question` (keywords.py),
        best first by the store's full-text ranking, as (seq, score, higher better)."""

    @abc.abstractmethod
    async def chunk_fields(self, vdb_id: UUID) -> list[ChunkFields]:
        """Every chunk's filterable fields, in seq order: (document name, document type,
        page, metadata)."""

    @abc.abstractmethod
    async def chunks(self, vdb_id: UUID, seqs: Sequence[int]) -> list[Chunk]:
        """The chunks with these seqs (in no particular order)."""

    @abc.abstractmethod
    async def chunk_range(self, vdb_id: UUID, first_seq: int, count: int) -> list[Chunk]:
        """Chunks `first_seq` .. `first_seq + count - 1`, in seq order."""

