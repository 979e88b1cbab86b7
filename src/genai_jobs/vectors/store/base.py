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
    Chunk,
    Dataset,
    DocumentInfo,
    NewChunk,
    NewDataset,
    NewVectorDatabase,
    Page,
    SkippedDocument,
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
    async def copy_chunks(self, vdb_id: UUID, build_id: UUID,
                          parent_id: UUID) -> tuple[int, int]:
        """Copy the built parent's chunks and vectors as this build's first ones, in one
        transaction; how many, and their bytes. VectorDatabaseNotFound if the parent is
        gone or not built; BuildSuperseded if the build is not ours."""

    @abc.abstractmethod
    async def chunk_texts(self, vdb_id: UUID, first_seq: int, count: int) -> list[str]: ...

    @abc.abstractmethod
    async def add_vectors(self, vdb_id: UUID, build_id: UUID, first_seq: int, count: int,
                          vectors: bytes) -> None:
        """Write one batch of float32 vectors; BuildSuperseded if not ours."""

    @abc.abstractmethod
    async def finish_build(self, vdb_id: UUID, build_id: UUID, chunk_count: int,
                           size_bytes: int, skipped: Sequence[SkippedDocument]) -> None:
        """Mark the index whole, of `size_bytes` of text and vectors (counted by the build
        as it wrote them: summing them here would read the whole index back), without the
        `skipped` documents; BuildSuperseded if not ours."""

    @abc.abstractmethod
    async def discard_build(self, vdb_id: UUID, build_id: UUID) -> None:
        """Delete what `build_id` wrote, if it still owns the build (else nothing)."""

    # -- search -------------------------------------------------------------
    @abc.abstractmethod
    def vector_batches(self, vdb_id: UUID) -> AsyncIterator[tuple[int, int, bytes]]:
        """Every batch of vectors as (first_seq, count, float32 bytes), in seq order."""

    @abc.abstractmethod
    async def chunks(self, vdb_id: UUID, seqs: Sequence[int]) -> list[Chunk]:
        """The chunks with these seqs (in no particular order)."""

    @abc.abstractmethod
    async def chunk_range(self, vdb_id: UUID, first_seq: int, count: int) -> list[Chunk]:
        """Chunks `first_seq` .. `first_seq + count - 1`, in seq order."""

