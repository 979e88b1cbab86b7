"""Datasets, chunks and vectors in the SQLite file, written by the job store's writer thread.

Writes share the job store's writer (one writer per process, group commit),
so a build never fights the workers' heartbeats for the file's lock. Small
reads run on the event loop like the job store's; large ones (a document's
bytes, a database's vectors) run in a thread on a connection of their own,
so that they never hold up the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

from genai_jobs.store.sqlite.connection import SQLiteDatabase, WriteTx, connect
from genai_jobs.store.sqlite.rows import from_epoch, maybe_datetime
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

# Vector batches read per trip to the reading thread.
BATCHES_PER_READ = 64


class SQLiteVectorStore(VectorStore):
    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database

    # -- datasets ---------------------------------------------------------
    async def create_dataset(self, tenant: str, name: str,
                             documents: Sequence[Document]) -> Dataset:
        dataset_id = str(uuid.uuid4())

        def insert(tx: WriteTx) -> None:
            tx.conn.execute(
                "INSERT INTO datasets (id, tenant, name, file_count, total_bytes, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (dataset_id, tenant, name, len(documents),
                 sum(len(document.content) for document in documents), tx.now))
            tx.conn.executemany(
                "INSERT INTO dataset_files (dataset_id, position, name, kind, size_bytes,"
                " content) VALUES (?, ?, ?, ?, ?, ?)",
                [(dataset_id, position, document.name, document.kind.value,
                  len(document.content), document.content)
                 for position, document in enumerate(documents)])

        await self._db.write(insert, bump=False)
        return await self.get_dataset(UUID(dataset_id), tenant)

    async def get_dataset(self, dataset_id: UUID, tenant: str | None) -> Dataset:
        row = self._db.query_one("SELECT * FROM datasets WHERE id = ?", (str(dataset_id),))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise DatasetNotFound(dataset_id)
        return self._datasets([row])[0]

    async def list_datasets(self, page: Page) -> tuple[list[Dataset], int]:
        where, params = _tenant_filter(page.tenant)
        total = self._db.query(f"SELECT COUNT(*) FROM datasets{where}", params)[0][0]
        rows = self._db.query(f"SELECT * FROM datasets{where} ORDER BY created_at DESC, id DESC"
                              " LIMIT ? OFFSET ?", [*params, page.limit, page.offset])
        return self._datasets(rows), int(total)

    def _datasets(self, rows: list[sqlite3.Row]) -> list[Dataset]:
        ids = [row["id"] for row in rows]
        files: dict[str, list[DocumentInfo]] = {dataset_id: [] for dataset_id in ids}
        if ids:
            for file in self._db.query(
                    "SELECT dataset_id, position, name, kind, size_bytes FROM dataset_files"
                    f" WHERE dataset_id IN ({', '.join('?' for _ in ids)})"
                    " ORDER BY dataset_id, position", ids):
                files[file["dataset_id"]].append(DocumentInfo(
                    file["position"], file["name"], DocumentKind(file["kind"]),
                    file["size_bytes"]))
        return [Dataset(UUID(row["id"]), row["tenant"], row["name"], files[row["id"]],
                        row["total_bytes"], from_epoch(row["created_at"])) for row in rows]

    async def delete_dataset(self, dataset_id: UUID, tenant: str | None) -> None:
        await self.get_dataset(dataset_id, tenant)

        def delete(tx: WriteTx) -> None:
            tx.conn.execute("DELETE FROM datasets WHERE id = ?", (str(dataset_id),))

        await self._db.write(delete, bump=False)

    async def read_document(self, dataset_id: UUID, position: int) -> bytes:
        rows = await self._read("SELECT content FROM dataset_files WHERE dataset_id = ?"
                                " AND position = ?", (str(dataset_id), position))
        if not rows:
            raise DatasetNotFound(dataset_id)
        return bytes(rows[0][0])

    # -- vector databases ---------------------------------------------------
    async def create_vector_database(self, new: NewVectorDatabase) -> VectorDatabase:
        vdb_id = str(new.id)

        def insert(tx: WriteTx) -> sqlite3.Row:
            row: sqlite3.Row = tx.conn.execute(
                "INSERT INTO vector_databases (id, tenant, name, dataset_id, embedding_model,"
                " dimensions, chunk_size, chunk_overlap, url, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (vdb_id, new.tenant, new.name, str(new.dataset_id), new.embedding_model,
                 new.dimensions, new.chunk_size, new.chunk_overlap,
                 new.url, tx.now)).fetchone()
            return row

        row, _ = await self._db.write(insert, bump=False)
        return _vdb(row)

    async def set_build_job(self, vdb_id: UUID, job_id: UUID) -> None:
        def update(tx: WriteTx) -> None:
            tx.conn.execute("UPDATE vector_databases SET build_job_id = ? WHERE id = ?"
                            " AND build_job_id IS NULL", (str(job_id), str(vdb_id)))

        await self._db.write(update, bump=False)

    async def get_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        row = self._db.query_one("SELECT * FROM vector_databases WHERE id = ?", (str(vdb_id),))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise VectorDatabaseNotFound(vdb_id)
        return _vdb(row)

    async def list_vector_databases(self, page: Page) -> tuple[list[VectorDatabase], int]:
        where, params = _tenant_filter(page.tenant)
        total = self._db.query(f"SELECT COUNT(*) FROM vector_databases{where}", params)[0][0]
        rows = self._db.query(f"SELECT * FROM vector_databases{where}"
                              " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                              [*params, page.limit, page.offset])
        return [_vdb(row) for row in rows], int(total)

    async def delete_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        vdb = await self.get_vector_database(vdb_id, tenant)

        def delete(tx: WriteTx) -> None:
            tx.conn.execute("DELETE FROM vector_databases WHERE id = ?", (str(vdb_id),))

        await self._db.write(delete, bump=False)
        return vdb

    # -- builds -------------------------------------------------------------
    async def start_build(self, vdb_id: UUID, job_id: UUID, build_id: UUID) -> VectorDatabase:
        def start(tx: WriteTx) -> sqlite3.Row:
            row = tx.conn.execute("SELECT build_job_id FROM vector_databases WHERE id = ?",
                                  (str(vdb_id),)).fetchone()
            if row is None or row[0] not in (None, str(job_id)):
                raise VectorDatabaseNotFound(vdb_id)
            _clear(tx, vdb_id)
            updated: sqlite3.Row = tx.conn.execute(
                "UPDATE vector_databases SET build_job_id = ?, build_id = ?, chunk_count = 0,"
                " built_at = NULL WHERE id = ? RETURNING *",
                (str(job_id), str(build_id), str(vdb_id))).fetchone()
            return updated

        row, _ = await self._db.write(start, bump=False)
        return _vdb(row)

    async def add_chunks(self, vdb_id: UUID, build_id: UUID, first_seq: int,
                         chunks: Sequence[NewChunk]) -> None:
        def insert(tx: WriteTx) -> None:
            _check_owner(tx, vdb_id, build_id)
            tx.conn.executemany(
                "INSERT INTO vector_chunks (vdb_id, seq, document, position, page, start_char,"
                " end_char, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(str(vdb_id), first_seq + offset, chunk.document, chunk.position, chunk.page,
                  chunk.start_char, chunk.end_char, chunk.text)
                 for offset, chunk in enumerate(chunks)])

        await self._db.write(insert, bump=False)

    async def chunk_texts(self, vdb_id: UUID, first_seq: int, count: int) -> list[str]:
        rows = self._db.query("SELECT text FROM vector_chunks WHERE vdb_id = ? AND seq >= ?"
                              " AND seq < ? ORDER BY seq",
                              (str(vdb_id), first_seq, first_seq + count))
        return [row[0] for row in rows]

    async def add_vectors(self, vdb_id: UUID, build_id: UUID, first_seq: int, count: int,
                          vectors: bytes) -> None:
        def insert(tx: WriteTx) -> None:
            _check_owner(tx, vdb_id, build_id)
            tx.conn.execute("INSERT INTO vector_batches (vdb_id, first_seq, count, vectors)"
                            " VALUES (?, ?, ?, ?)", (str(vdb_id), first_seq, count, vectors))

        await self._db.write(insert, bump=False)

    async def finish_build(self, vdb_id: UUID, build_id: UUID, chunk_count: int) -> None:
        def finish(tx: WriteTx) -> None:
            _check_owner(tx, vdb_id, build_id)
            tx.conn.execute("UPDATE vector_databases SET chunk_count = ?, built_at = ?"
                            " WHERE id = ?", (chunk_count, tx.now, str(vdb_id)))

        await self._db.write(finish, bump=False)

    async def discard_build(self, vdb_id: UUID, build_id: UUID) -> None:
        def discard(tx: WriteTx) -> None:
            row = tx.conn.execute("SELECT build_id FROM vector_databases WHERE id = ?",
                                  (str(vdb_id),)).fetchone()
            if row is not None and row[0] == str(build_id):
                _clear(tx, vdb_id)

        await self._db.write(discard, bump=False)

    # -- search -------------------------------------------------------------
    async def vector_batches(self, vdb_id: UUID) -> AsyncIterator[tuple[int, int, bytes]]:
        after = -1
        while True:  # bounded: each pass moves past the batches it read, or stops
            rows = await self._read(
                "SELECT first_seq, count, vectors FROM vector_batches WHERE vdb_id = ?"
                " AND first_seq > ? ORDER BY first_seq LIMIT ?",
                (str(vdb_id), after, BATCHES_PER_READ))
            for first_seq, count, vectors in rows:
                yield int(first_seq), int(count), bytes(vectors)
            if len(rows) < BATCHES_PER_READ:
                return
            after = int(rows[-1][0])

    async def chunks(self, vdb_id: UUID, seqs: Sequence[int]) -> list[Chunk]:
        if not seqs:
            return []
        rows = self._db.query(
            "SELECT * FROM vector_chunks WHERE vdb_id = ?"
            f" AND seq IN ({', '.join('?' for _ in seqs)})", [str(vdb_id), *seqs])
        return [Chunk(row["seq"], row["document"], row["position"], row["page"],
                      row["start_char"], row["end_char"], row["text"]) for row in rows]

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """A large read, in a thread on a connection of its own."""
        def read() -> list[tuple[Any, ...]]:
            conn = connect(self._db.path)
            try:
                return [tuple(row) for row in conn.execute(sql, params).fetchall()]
            finally:
                conn.close()

        return await asyncio.to_thread(read)


def _tenant_filter(tenant: str | None) -> tuple[str, list[Any]]:
    return ("", []) if tenant is None else (" WHERE tenant = ?", [tenant])


def _check_owner(tx: WriteTx, vdb_id: UUID, build_id: UUID) -> None:
    row = tx.conn.execute("SELECT build_id FROM vector_databases WHERE id = ?",
                          (str(vdb_id),)).fetchone()
    if row is None or row[0] != str(build_id):
        raise BuildSuperseded(vdb_id)


def _clear(tx: WriteTx, vdb_id: UUID) -> None:
    tx.conn.execute("DELETE FROM vector_chunks WHERE vdb_id = ?", (str(vdb_id),))
    tx.conn.execute("DELETE FROM vector_batches WHERE vdb_id = ?", (str(vdb_id),))
    tx.conn.execute("UPDATE vector_databases SET chunk_count = 0, built_at = NULL"
                    " WHERE id = ?", (str(vdb_id),))


def _vdb(row: sqlite3.Row) -> VectorDatabase:
    return VectorDatabase(
        id=UUID(row["id"]), tenant=row["tenant"], name=row["name"],
        dataset_id=UUID(row["dataset_id"]), embedding_model=row["embedding_model"],
        dimensions=row["dimensions"], chunk_size=row["chunk_size"],
        chunk_overlap=row["chunk_overlap"], url=row["url"],
        build_job_id=_uuid(row["build_job_id"]), build_id=_uuid(row["build_id"]),
        chunk_count=row["chunk_count"], built_at=maybe_datetime(row["built_at"]),
        created_at=from_epoch(row["created_at"]))


def _uuid(value: str | None) -> UUID | None:
    return None if value is None else UUID(value)
