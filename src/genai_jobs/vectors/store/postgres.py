"""Datasets, chunks and vectors in PostgreSQL, on the job store's connection pool.

A build's writes check its build id under a row lock on the vector database
(`FOR SHARE`; taking a build over locks it `FOR UPDATE`), so a take-over waits
for a write in flight and every write after it sees the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
import psycopg.rows
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from genai_jobs.domain import StoreUnavailable
from genai_jobs.vectors.keywords import websearch_query
from genai_jobs.vectors.records import (
    BuildOutcome,
    BuildSuperseded,
    Chunk,
    ChunkFields,
    CopiedRange,
    Dataset,
    DatasetNotFound,
    DocumentInfo,
    DocumentRecord,
    Family,
    NewChunk,
    NewDataset,
    NewVectorDatabase,
    NotBuilt,
    Page,
    VectorDatabase,
    VectorDatabaseNotFound,
    VectorDatabaseQuery,
)
from genai_jobs.vectors.spooled import SpooledFile, sha256_of, whole
from genai_jobs.vectors.store import rows as mapping
from genai_jobs.vectors.store.base import VectorStore

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]
# Vector batches fetched per round trip while loading a database's vectors.
BATCHES_PER_FETCH = 64
CONNECT_TIMEOUT_SECONDS = 5.0
# Inserts of a new version that may lose the race for its number to another one.
VERSION_TRIES = 5
_INSERT_VECTOR_DATABASE = (
    "INSERT INTO vector_databases (id, tenant, name, dataset_id, dataset_name,"
    " embedding_model, dimensions, chunk_size, chunk_overlap, chunk_overlap_percentage,"
    " separators, chunking_method, url, use_case_id, created_by, parent_id, family_id,"
    " version, dataset_ids, metadata_columns, update_mode) VALUES (%s, %s, %s, %s, %s, %s,"
    " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, (SELECT COALESCE(MAX(version), 0) + 1 FROM"
    " vector_databases WHERE family_id = %s), %s, %s, %s) RETURNING *"
)
_INSERT_CHUNK = mapping.insert_chunk_sql("%s")
_INSERT_DOCUMENT = mapping.insert_document_sql("%s")


class PostgresVectorStore(VectorStore):
    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool

    # -- datasets ---------------------------------------------------------
    async def create_dataset(self, new: NewDataset) -> Dataset:
        # PostgreSQL takes a file's bytes in one parameter: a spooled one is read first.
        contents = [await asyncio.to_thread(whole, document.content)
                    if isinstance(document.content, SpooledFile) else document.content
                    for document in new.documents]
        digests = await asyncio.to_thread(lambda: [sha256_of(content) for content in contents])
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO datasets (id, version_id, tenant, name, file_count, total_bytes,"
                " created_by, metadata_columns, skipped_files)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (new.id, uuid.uuid4(), new.tenant, new.name, len(new.documents),
                 sum(len(document.content) for document in new.documents), new.created_by,
                 Jsonb(mapping.columns_json(list(new.metadata_columns))),
                 Jsonb(mapping.bad_files_json(new.skipped_files))))
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO dataset_files (dataset_id, position, name, kind, size_bytes,"
                    " content, metadata, digest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(new.id, position, document.name, document.kind.value,
                      len(content), content, Jsonb(dict(document.metadata)), digest)
                     for position, (document, content, digest)
                     in enumerate(zip(new.documents, contents, digests, strict=True))])
        return await self.get_dataset(new.id, new.tenant)

    async def get_dataset(self, dataset_id: UUID, tenant: str | None) -> Dataset:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT * FROM datasets WHERE id = %s", (dataset_id,))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise DatasetNotFound(dataset_id)
        return mapping.dataset(row, DECODE, row["file_count"])

    async def list_datasets(self, page: Page) -> tuple[list[Dataset], int]:
        where, params = _tenant_filter(page.tenant)
        async with self._connection() as conn:
            total = await _one(conn, f"SELECT COUNT(*) AS n FROM datasets{where}", params)
            rows = await (await conn.execute(
                f"SELECT * FROM datasets{where} ORDER BY created_at DESC, id DESC"
                " LIMIT %s OFFSET %s", [*params, page.limit, page.offset])).fetchall()
        return ([mapping.dataset(row, DECODE, row["file_count"]) for row in rows],
                int(total["n"] if total else 0))

    async def delete_dataset(self, dataset_id: UUID, tenant: str | None) -> None:
        await self.get_dataset(dataset_id, tenant)
        async with self._connection() as conn:
            await conn.execute("DELETE FROM datasets WHERE id = %s", (dataset_id,))

    async def update_dataset(self, dataset_id: UUID, tenant: str | None, name: str | None,
                             categories: Sequence[str] | None) -> Dataset:
        await self.get_dataset(dataset_id, tenant)
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE datasets SET name = COALESCE(%s, name),"
                " categories = COALESCE(%s, categories) WHERE id = %s",
                (name, None if categories is None else Jsonb(list(categories)), dataset_id))
        return await self.get_dataset(dataset_id, tenant)

    async def documents(self, dataset_id: UUID) -> list[DocumentInfo]:
        await self.get_dataset(dataset_id, None)
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT position, name, kind, size_bytes, metadata, digest FROM dataset_files"
                " WHERE dataset_id = %s ORDER BY position", (dataset_id,))).fetchall()
        return [mapping.document_info(row, DECODE) for row in rows]

    async def read_document(self, dataset_id: UUID, position: int) -> bytes:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT content FROM dataset_files WHERE dataset_id = %s"
                             " AND position = %s", (dataset_id, position))
        if row is None:
            raise DatasetNotFound(dataset_id)
        return bytes(row["content"])

    # -- vector databases ---------------------------------------------------
    async def create_vector_database(self, new: NewVectorDatabase) -> VectorDatabase:
        dataset_ids = [str(each) for each in new.dataset_ids or (new.dataset_id,)]
        family_id = new.family_id or new.id
        values = (new.id, new.tenant, new.name, new.dataset_id, new.dataset_name,
                  new.embedding_model, new.dimensions, new.chunk_size, new.chunk_overlap,
                  new.chunk_overlap_percentage, Jsonb(list(new.separators)),
                  new.chunking_method, new.url, new.use_case_id, new.created_by, new.parent_id,
                  family_id, family_id, Jsonb(dataset_ids), Jsonb(list(new.metadata_columns)),
                  new.update_mode.value)
        for _ in range(VERSION_TRIES):  # bounded: each loser of a race tries the next number
            try:
                async with self._transaction() as conn:
                    row = await _one(conn, _INSERT_VECTOR_DATABASE, values)
                    await conn.execute("INSERT INTO vector_families (family_id, tenant)"
                                       " VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                       (family_id, new.tenant))
            except psycopg.errors.UniqueViolation:
                continue  # another version of the family took this number first
            assert row is not None
            return mapping.vector_database(row, DECODE)
        raise StoreUnavailable(f"vector database family {family_id} is taking new versions "
                               f"too fast to number this one")

    async def set_build_job(self, vdb_id: UUID, job_id: UUID) -> None:
        async with self._connection() as conn:
            await conn.execute("UPDATE vector_databases SET build_job_id = %s WHERE id = %s"
                               " AND build_job_id IS NULL", (job_id, vdb_id))

    async def get_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT * FROM vector_databases WHERE id = %s", (vdb_id,))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise VectorDatabaseNotFound(vdb_id)
        return mapping.vector_database(row, DECODE)

    async def list_vector_databases(
            self, query: VectorDatabaseQuery) -> tuple[list[VectorDatabase], int]:
        where, order, params = mapping.listing_sql(query, "%s", "ILIKE")
        async with self._connection() as conn:
            total = await _one(conn, f"SELECT COUNT(*) AS n FROM vector_databases{where}",
                               params)
            rows = await (await conn.execute(
                f"SELECT * FROM vector_databases{where}{order} LIMIT %s OFFSET %s",
                [*params, query.page.limit, query.page.offset])).fetchall()
        return ([mapping.vector_database(row, DECODE) for row in rows],
                int(total["n"] if total else 0))

    async def count_vector_databases(self, tenant: str | None) -> int:
        where, params = _tenant_filter(tenant)
        async with self._connection() as conn:
            row = await _one(conn, f"SELECT COUNT(*) AS n FROM vector_databases{where}", params)
        return int(row["n"] if row else 0)

    async def rename_vector_database(self, vdb_id: UUID, tenant: str | None,
                                     name: str) -> VectorDatabase:
        await self.get_vector_database(vdb_id, tenant)
        async with self._connection() as conn:
            row = await _one(conn, "UPDATE vector_databases SET name = %s, updated_at = now()"
                             " WHERE id = %s RETURNING *", (name, vdb_id))
        if row is None:  # deleted meanwhile
            raise VectorDatabaseNotFound(vdb_id)
        return mapping.vector_database(row, DECODE)

    async def delete_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        vdb = await self.get_vector_database(vdb_id, tenant)
        async with self._transaction() as conn:
            # The family's row first: deletes and builds of one family take turns on it.
            await conn.execute("SELECT 1 FROM vector_families WHERE family_id = %s"
                               " FOR UPDATE", (vdb.family_id,))
            await conn.execute("DELETE FROM vector_databases WHERE id = %s", (vdb_id,))
            # Searches of the family move to its newest other built version, if any.
            await conn.execute(
                "UPDATE vector_families SET updated_at = now(), active_id = (SELECT id FROM"
                " vector_databases WHERE family_id = %(f)s AND built_at IS NOT NULL ORDER BY"
                " version DESC LIMIT 1) WHERE family_id = %(f)s AND active_id = %(v)s",
                {"f": vdb.family_id, "v": vdb_id})
            await conn.execute("DELETE FROM vector_families WHERE family_id = %(f)s AND NOT"
                               " EXISTS (SELECT 1 FROM vector_databases WHERE family_id ="
                               " %(f)s)", {"f": vdb.family_id})
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
        return mapping.vector_database(updated, DECODE)

    async def add_chunks(self, vdb_id: UUID, build_id: UUID, first_seq: int,
                         chunks: Sequence[NewChunk]) -> None:
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            async with conn.cursor() as cursor:
                await cursor.executemany(_INSERT_CHUNK, mapping.chunk_values(
                    vdb_id, first_seq, chunks, Jsonb))

    async def copy_chunk_ranges(self, vdb_id: UUID, build_id: UUID, parent_id: UUID,
                                ranges: Sequence[CopiedRange]) -> int:
        copied = 0
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            if await _one(conn, "SELECT 1 FROM vector_databases WHERE id = %s AND built_at"
                          " IS NOT NULL FOR SHARE", (parent_id,)) is None:
                raise VectorDatabaseNotFound(parent_id)
            for each in ranges:
                params = {"vdb": vdb_id, "shift": each.first_seq - each.parent_first,
                          "parent": parent_id, "first": each.parent_first,
                          "end": each.parent_first + each.count}
                row = await _one(conn, (
                    "WITH copied AS (INSERT INTO vector_chunks (vdb_id, seq, document, position,"
                    " page, start_char, end_char, text, metadata, content_key, kind)"
                    " SELECT %(vdb)s, seq + %(shift)s, document, position, page, start_char,"
                    " end_char, text, metadata, content_key, kind FROM vector_chunks"
                    " WHERE vdb_id = %(parent)s AND seq >= %(first)s AND seq < %(end)s"
                    " RETURNING octet_length(text) AS size)"
                    " SELECT COALESCE(SUM(size), 0) AS size FROM copied"), params)
                copied += int(row["size"]) if row else 0
        return copied

    async def chunks_without_keys(self, vdb_id: UUID, after_seq: int,
                                  limit: int) -> list[tuple[int, str]]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT seq, text FROM vector_chunks WHERE vdb_id = %s AND seq > %s"
                " AND content_key IS NULL ORDER BY seq LIMIT %s",
                (vdb_id, after_seq, limit))).fetchall()
        return [(int(row["seq"]), row["text"]) for row in rows]

    async def set_content_keys(self, vdb_id: UUID, keys: Sequence[tuple[int, str]]) -> None:
        async with self._transaction() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "UPDATE vector_chunks SET content_key = %s WHERE vdb_id = %s AND seq = %s",
                [(key, vdb_id, seq) for seq, key in keys])

    async def chunk_keys(self, vdb_id: UUID, first_seq: int, count: int) -> dict[int, str]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT seq, content_key FROM vector_chunks WHERE vdb_id = %s AND seq >= %s"
                " AND seq < %s", (vdb_id, first_seq, first_seq + count))).fetchall()
        return {int(row["seq"]): row["content_key"] for row in rows}

    async def earlier_chunks(self, vdb_id: UUID, keys: Sequence[str],
                             before_seq: int) -> dict[str, int]:
        if not keys:
            return {}
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT content_key, MIN(seq) AS seq FROM vector_chunks WHERE vdb_id = %s"
                " AND seq < %s AND content_key = ANY(%s) GROUP BY content_key",
                (vdb_id, before_seq, list(keys)))).fetchall()
        return {row["content_key"]: int(row["seq"]) for row in rows}

    async def family_chunks(self, family_id: UUID,
                            keys: Sequence[str]) -> dict[str, tuple[UUID, int]]:
        if not keys:
            return {}
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT DISTINCT ON (c.content_key) c.content_key, c.vdb_id, c.seq"
                " FROM vector_chunks AS c JOIN vector_databases AS v ON v.id = c.vdb_id"
                " WHERE c.content_key = ANY(%s) AND v.family_id = %s"
                " AND v.built_at IS NOT NULL", (list(keys), family_id))).fetchall()
        return {row["content_key"]: (row["vdb_id"], int(row["seq"])) for row in rows}

    async def vectors_at(self, vdb_id: UUID, seqs: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        async with self._connection() as conn:
            for low, high in mapping.seq_spans(seqs):
                rows = await (await conn.execute(
                    "SELECT first_seq, count, vectors FROM vector_batches WHERE vdb_id = %s"
                    " AND first_seq <= %s AND first_seq + count > %s ORDER BY first_seq",
                    (vdb_id, high, low))).fetchall()
                for row in rows:
                    found.update(mapping.rows_of_batch(int(row["first_seq"]), int(row["count"]),
                                                       bytes(row["vectors"]), seqs))
        return found

    async def chunk_texts_at(self, vdb_id: UUID, seqs: Sequence[int]) -> dict[int, str]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT seq, text FROM vector_chunks WHERE vdb_id = %s AND seq = ANY(%s)",
                (vdb_id, list(seqs)))).fetchall()
        return {int(row["seq"]): row["text"] for row in rows}

    async def add_vectors(self, vdb_id: UUID, build_id: UUID, first_seq: int, count: int,
                          vectors: bytes) -> None:
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            await conn.execute("INSERT INTO vector_batches (vdb_id, first_seq, count, vectors)"
                               " VALUES (%s, %s, %s, %s)", (vdb_id, first_seq, count, vectors))

    async def finish_build(self, vdb_id: UUID, build_id: UUID, outcome: BuildOutcome) -> bool:
        async with self._transaction() as conn:
            await _check_owner(conn, vdb_id, build_id)
            row = await _one(conn, (
                "UPDATE vector_databases SET chunk_count = %s, built_at = now(),"
                " updated_at = now(), size_bytes = %s, skipped_documents = %s, changes = %s"
                " WHERE id = %s RETURNING family_id"),
                (outcome.chunk_count, outcome.size_bytes,
                 Jsonb(mapping.skipped_documents_json(outcome.skipped)),
                 Jsonb(dict(outcome.changes)), vdb_id))
            assert row is not None
            async with conn.cursor() as cursor:
                await cursor.executemany(_INSERT_DOCUMENT,
                                         mapping.document_values(vdb_id, outcome.records))
                await cursor.execute(
                    "UPDATE vector_families SET active_id = %(v)s, updated_at = now()"
                    " WHERE family_id = %(f)s AND (active_id IS NULL OR active_id = %(p)s"
                    " OR active_id = %(v)s)",
                    {"v": vdb_id, "f": row["family_id"], "p": outcome.parent_id})
                return cursor.rowcount > 0

    async def discard_build(self, vdb_id: UUID, build_id: UUID) -> None:
        async with self._transaction() as conn:
            row = await _one(conn, "SELECT build_id FROM vector_databases WHERE id = %s"
                             " FOR UPDATE", (vdb_id,))
            if row is not None and row["build_id"] == build_id:
                await _clear(conn, vdb_id)

    async def document_records(self, vdb_id: UUID) -> list[DocumentRecord]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM vector_documents WHERE vdb_id = %s ORDER BY ordinal",
                (vdb_id,))).fetchall()
            if rows:
                return [mapping.document_record(row) for row in rows]
            return mapping.legacy_records(await (await conn.execute(
                "SELECT document, MIN(seq) AS first_seq, COUNT(*) AS chunk_count"
                " FROM vector_chunks WHERE vdb_id = %s GROUP BY document ORDER BY 2",
                (vdb_id,))).fetchall())

    # -- families -----------------------------------------------------------
    async def get_family(self, family_id: UUID, tenant: str | None) -> Family:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT * FROM vector_families WHERE family_id = %s",
                             (family_id,))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise VectorDatabaseNotFound(family_id)
        return mapping.family(row, DECODE)

    async def family_versions(self, family_id: UUID) -> list[VectorDatabase]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM vector_databases WHERE family_id = %s ORDER BY version",
                (family_id,))).fetchall()
        return [mapping.vector_database(row, DECODE) for row in rows]

    async def set_active_version(self, family_id: UUID, vdb_id: UUID) -> Family:
        async with self._transaction() as conn:
            version = await _one(conn, "SELECT built_at FROM vector_databases WHERE id = %s"
                                 " AND family_id = %s FOR SHARE", (vdb_id, family_id))
            if version is None:
                raise VectorDatabaseNotFound(vdb_id)
            if version["built_at"] is None:
                raise NotBuilt(f"vector database {vdb_id} is not built: only a COMPLETED "
                               "version can answer its family's searches")
            row = await _one(conn, "UPDATE vector_families SET active_id = %s,"
                             " updated_at = now() WHERE family_id = %s RETURNING *",
                             (vdb_id, family_id))
        assert row is not None
        return mapping.family(row, DECODE)

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

    async def keyword_search(self, vdb_id: UUID, question: str,
                             limit: int) -> list[tuple[int, float]]:
        query = websearch_query(question)
        if query is None:
            return []
        async with self._connection() as conn:
            rows = await (await conn.execute(
                "SELECT seq, ts_rank_cd(tsv, q) AS score FROM vector_chunks,"
                " websearch_to_tsquery('english', %s) AS q WHERE vdb_id = %s AND tsv @@ q"
                " ORDER BY score DESC, seq LIMIT %s", (query, vdb_id, limit))).fetchall()
        return [(int(row["seq"]), float(row["score"])) for row in rows]

    async def chunk_fields(self, vdb_id: UUID) -> list[ChunkFields]:
        async with self._connection() as conn:
            cursor = conn.cursor(row_factory=psycopg.rows.tuple_row)
            rows = await (await cursor.execute(
                "SELECT document, kind, page, metadata FROM vector_chunks WHERE vdb_id = %s"
                " ORDER BY seq", (vdb_id,))).fetchall()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def chunks(self, vdb_id: UUID, seqs: Sequence[int]) -> list[Chunk]:
        if not seqs:
            return []
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {mapping.CHUNK_COLUMNS} FROM vector_chunks WHERE vdb_id = %s"
                " AND seq = ANY(%s)",
                (vdb_id, list(seqs)))).fetchall()
        return [mapping.chunk(row, DECODE) for row in rows]

    async def chunk_range(self, vdb_id: UUID, first_seq: int, count: int) -> list[Chunk]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {mapping.CHUNK_COLUMNS} FROM vector_chunks WHERE vdb_id = %s"
                " AND seq >= %s AND seq < %s ORDER BY seq",
                (vdb_id, first_seq, first_seq + count))).fetchall()
        return [mapping.chunk(row, DECODE) for row in rows]

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
    await conn.execute("DELETE FROM vector_documents WHERE vdb_id = %s", (vdb_id,))
    await conn.execute("UPDATE vector_databases SET chunk_count = 0, built_at = NULL,"
                       " skipped_documents = '[]', changes = '{}' WHERE id = %s", (vdb_id,))


def _same(value: Any) -> Any:
    return value


# psycopg gives UUIDs, datetimes and decoded JSON as they are.
DECODE = mapping.Decoder(uuid=_same, time=_same, json=_same)
