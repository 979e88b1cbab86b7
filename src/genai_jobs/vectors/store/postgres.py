"""Datasets, chunks and vectors in PostgreSQL, on the job store's connection pool.

A build's writes check its build id under a row lock on the vector database
(`FOR SHARE`; taking a build over locks it `FOR UPDATE`), so a take-over waits
for a write in flight and every write after it sees the new owner.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from genai_jobs.domain import StoreUnavailable
from genai_jobs.vectors.records import (
    BuildSuperseded,
    Chunk,
    Dataset,
    DatasetNotFound,
    Document,
    DocumentInfo,
    DocumentKind,
    NewChunk,
    NewVectorDatabase,
    Page,
    VectorDatabase,
    VectorDatabaseNotFound,
)
from genai_jobs.vectors.store.base import VectorStore

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]
# Vector batches fetched per round trip while loading a database's vectors.
BATCHES_PER_FETCH = 64
CONNECT_TIMEOUT_SECONDS = 5.0


class PostgresVectorStore(VectorStore):
    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    # -- datasets ---------------------------------------------------------
    async def create_dataset(self, tenant: str, name: str,
                             documents: Sequence[Document]) -> Dataset:
        dataset_id = uuid.uuid4()
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO datasets (id, tenant, name, file_count, total_bytes)"
                " VALUES (%s, %s, %s, %s, %s)",
                (dataset_id, tenant, name, len(documents),
                 sum(len(document.content) for document in documents)))
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO dataset_files (dataset_id, position, name, kind, size_bytes,"
                    " content) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(dataset_id, position, document.name, document.kind.value,
                      len(document.content), document.content)
                     for position, document in enumerate(documents)])
        return await self.get_dataset(dataset_id, tenant)

    async def get_dataset(self, dataset_id: UUID, tenant: str | None) -> Dataset:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT * FROM datasets WHERE id = %s", (dataset_id,))
            if row is None or (tenant is not None and row["tenant"] != tenant):
                raise DatasetNotFound(dataset_id)
            return (await _datasets(conn, [row]))[0]

    async def list_datasets(self, page: Page) -> tuple[list[Dataset], int]:
        where, params = _tenant_filter(page.tenant)
        async with self._connection() as conn:
            total = await _one(conn, f"SELECT COUNT(*) AS n FROM datasets{where}", params)
            rows = await (await conn.execute(
                f"SELECT * FROM datasets{where} ORDER BY created_at DESC, id DESC"
                " LIMIT %s OFFSET %s", [*params, page.limit, page.offset])).fetchall()
            return await _datasets(conn, rows), int(total["n"] if total else 0)

    async def delete_dataset(self, dataset_id: UUID, tenant: str | None) -> None:
        await self.get_dataset(dataset_id, tenant)
        async with self._connection() as conn:
            await conn.execute("DELETE FROM datasets WHERE id = %s", (dataset_id,))

    async def read_document(self, dataset_id: UUID, position: int) -> bytes:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT content FROM dataset_files WHERE dataset_id = %s"
                             " AND position = %s", (dataset_id, position))
        if row is None:
            raise DatasetNotFound(dataset_id)
        return bytes(row["content"])

    # -- vector databases ---------------------------------------------------
    async def create_vector_database(self, new: NewVectorDatabase) -> VectorDatabase:
        async with self._connection() as conn:
            row = await _one(
                conn, "INSERT INTO vector_databases (id, tenant, name, dataset_id,"
                " embedding_model, dimensions, chunk_size, chunk_overlap, url)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (new.id, new.tenant, new.name, new.dataset_id, new.embedding_model,
                 new.dimensions, new.chunk_size, new.chunk_overlap, new.url))
        assert row is not None
        return _vdb(row)

    async def set_build_job(self, vdb_id: UUID, job_id: UUID) -> None:
        async with self._connection() as conn:
            await conn.execute("UPDATE vector_databases SET build_job_id = %s WHERE id = %s"
                               " AND build_job_id IS NULL", (job_id, vdb_id))

    async def get_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT * FROM vector_databases WHERE id = %s", (vdb_id,))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise VectorDatabaseNotFound(vdb_id)
        return _vdb(row)

    async def list_vector_databases(self, page: Page) -> tuple[list[VectorDatabase], int]:
        where, params = _tenant_filter(page.tenant)
        async with self._connection() as conn:
            total = await _one(conn, f"SELECT COUNT(*) AS n FROM vector_databases{where}",
                               params)
            rows = await (await conn.execute(
                f"SELECT * FROM vector_databases{where} ORDER BY created_at DESC, id DESC"
                " LIMIT %s OFFSET %s", [*params, page.limit, page.offset])).fetchall()
        return [_vdb(row) for row in rows], int(total["n"] if total else 0)

    async def delete_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        vdb = await self.get_vector_database(vdb_id, tenant)
        async with self._connection() as conn:
            await conn.execute("DELETE FROM vector_databases WHERE id = %s", (vdb_id,))
        return vdb

    # -- builds -------------------------------------------------------------
    async def start_build(self, vdb_id: UUID, job_id: UUID, build_id: UUID) -> VectorDatabase:
        async with self._transaction() as conn:
            row = await _one(conn, "SELECT build_job_id FROM vector_databases WHERE id = %s"
                             " FOR UPDATE", (vdb_id,))
            if row is None or row["build_job_id"] not in (None, job_id):
                raise VectorDatabaseNotFound(vdb_id)
            await _clear(conn, vdb_id)
            updated = await _one(conn, "UPDATE vector_databases SET build_job_id = %s,"
                                 " build_id = %s WHERE id = %s RETURNING *",
                                 (job_id, build_id, vdb_id))
        assert updated is not None
        return _vdb(updated)

    async def add_chunks(self, vdb_id: UUID, build_id: UUID, first_seq: int,
                         chunks: Sequence[NewChunk]) -> None:
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO vector_chunks (vdb_id, seq, document, position, page,"
                    " start_char, end_char, text) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(vdb_id, first_seq + offset, chunk.document, chunk.position, chunk.page,
                      chunk.start_char, chunk.end_char, chunk.text)
                     for offset, chunk in enumerate(chunks)])

    async def chunk_texts(self, vdb_id: UUID, first_seq: int, count: int) -> list[str]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT text FROM vector_chunks WHERE vdb_id = %s AND seq >= %s AND seq < %s"
                " ORDER BY seq", (vdb_id, first_seq, first_seq + count))).fetchall()
        return [row["text"] for row in rows]

    async def add_vectors(self, vdb_id: UUID, build_id: UUID, first_seq: int, count: int,
                          vectors: bytes) -> None:
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            await conn.execute("INSERT INTO vector_batches (vdb_id, first_seq, count, vectors)"
                               " VALUES (%s, %s, %s, %s)", (vdb_id, first_seq, count, vectors))

    async def finish_build(self, vdb_id: UUID, build_id: UUID, chunk_count: int) -> None:
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            await conn.execute("UPDATE vector_databases SET chunk_count = %s, built_at = now()"
                               " WHERE id = %s", (chunk_count, vdb_id))

    async def discard_build(self, vdb_id: UUID, build_id: UUID) -> None:
        async with self._transaction() as conn:
            row = await _one(conn, "SELECT build_id FROM vector_databases WHERE id = %s"
                             " FOR UPDATE", (vdb_id,))
            if row is not None and row["build_id"] == build_id:
                await _clear(conn, vdb_id)

    # -- search -------------------------------------------------------------
    async def vector_batches(self, vdb_id: UUID) -> AsyncIterator[tuple[int, int, bytes]]:
        after = -1
        while True:  # bounded: each pass moves past the batches it read, or stops
            async with self._connection() as conn:
                rows = await (await conn.execute(
                    "SELECT first_seq, count, vectors FROM vector_batches WHERE vdb_id = %s"
                    " AND first_seq > %s ORDER BY first_seq LIMIT %s",
                    (vdb_id, after, BATCHES_PER_FETCH))).fetchall()
            for row in rows:
                yield int(row["first_seq"]), int(row["count"]), bytes(row["vectors"])
            if len(rows) < BATCHES_PER_FETCH:
                return
            after = int(rows[-1]["first_seq"])

    async def chunks(self, vdb_id: UUID, seqs: Sequence[int]) -> list[Chunk]:
        if not seqs:
            return []
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM vector_chunks WHERE vdb_id = %s AND seq = ANY(%s)",
                (vdb_id, list(seqs)))).fetchall()
        return [Chunk(row["seq"], row["document"], row["position"], row["page"],
                      row["start_char"], row["end_char"], row["text"]) for row in rows]

    # -- connections --------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        try:
            async with self._pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise StoreUnavailable("the PostgreSQL store is not migrated: run "
                                   "`genai-jobs migrate`") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn


async def _one(conn: Conn, query: Any, params: Any) -> Row | None:
    return await (await conn.execute(query, params)).fetchone()


async def _datasets(conn: Conn, rows: list[Row]) -> list[Dataset]:
    ids = [row["id"] for row in rows]
    files: dict[UUID, list[DocumentInfo]] = {dataset_id: [] for dataset_id in ids}
    if ids:
        for file in await (await conn.execute(
                "SELECT dataset_id, position, name, kind, size_bytes FROM dataset_files"
                " WHERE dataset_id = ANY(%s) ORDER BY dataset_id, position", (ids,))).fetchall():
            files[file["dataset_id"]].append(DocumentInfo(
                file["position"], file["name"], DocumentKind(file["kind"]), file["size_bytes"]))
    return [Dataset(row["id"], row["tenant"], row["name"], files[row["id"]],
                    row["total_bytes"], row["created_at"]) for row in rows]


def _tenant_filter(tenant: str | None) -> tuple[str, list[Any]]:
    return ("", []) if tenant is None else (" WHERE tenant = %s", [tenant])


async def _check_owner(conn: Conn, vdb_id: UUID, build_id: UUID) -> None:
    row = await _one(conn, "SELECT build_id FROM vector_databases WHERE id = %s FOR SHARE",
                     (vdb_id,))
    if row is None or row["build_id"] != build_id:
        raise BuildSuperseded(vdb_id)


async def _clear(conn: Conn, vdb_id: UUID) -> None:
    await conn.execute("DELETE FROM vector_chunks WHERE vdb_id = %s", (vdb_id,))
    await conn.execute("DELETE FROM vector_batches WHERE vdb_id = %s", (vdb_id,))
    await conn.execute("UPDATE vector_databases SET chunk_count = 0, built_at = NULL"
                       " WHERE id = %s", (vdb_id,))


def _vdb(row: Row) -> VectorDatabase:
    return VectorDatabase(
        id=row["id"], tenant=row["tenant"], name=row["name"], dataset_id=row["dataset_id"],
        embedding_model=row["embedding_model"], dimensions=row["dimensions"],
        chunk_size=row["chunk_size"], chunk_overlap=row["chunk_overlap"], url=row["url"],
        build_job_id=row["build_job_id"], build_id=row["build_id"],
        chunk_count=row["chunk_count"], built_at=row["built_at"], created_at=row["created_at"])
