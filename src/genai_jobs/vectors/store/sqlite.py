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
from genai_jobs.store.sqlite.rows import dump_json, from_epoch, load_json
from genai_jobs.vectors.keywords import fts5_query
from genai_jobs.vectors.records import (
    BuildOutcome,
    BuildSuperseded,
    Chunk,
    ChunkFields,
    CopiedRange,
    Dataset,
    DatasetNotFound,
    Document,
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
from genai_jobs.vectors.spooled import sha256_of, slices, whole
from genai_jobs.vectors.store import rows as mapping
from genai_jobs.vectors.store.base import VectorStore

# Vector batches read per trip to the reading thread.
BATCHES_PER_READ = 64
# Values bound in one IN (...) list (SQLite allows 32,766 parameters).
KEYS_PER_QUERY = 500
_INSERT_CHUNK = mapping.insert_chunk_sql("?")
_INSERT_DOCUMENT = mapping.insert_document_sql("?")


# Files are inserted by a SELECT that inserts nothing when told so (see create_dataset).
_INSERT_FILE = ("INSERT INTO dataset_files (dataset_id, position, name, kind, size_bytes,"
                " content, metadata, digest) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE ?")
# A large file is kept a slice per row in dataset_file_parts (migration 0008), its own
# row's content left empty; files up to this size are one value.
LARGE_FILE_BYTES = 1 << 20
_INSERT_PART = ("INSERT INTO dataset_file_parts (dataset_id, position, part, content)"
                " VALUES (?, ?, ?, ?)")


def _write_large_file(conn: sqlite3.Connection, dataset_id: str, position: int,
                      document: Document, digest: str) -> None:
    conn.execute(_INSERT_FILE, (dataset_id, position, document.name, document.kind.value,
                                len(document.content), b"", dump_json(dict(document.metadata)),
                                digest, True))
    # From the upload's temporary file if it is still there (vectors/spooled.py).
    conn.executemany(_INSERT_PART, ((dataset_id, position, part, piece) for part, piece
                                    in enumerate(slices(document.content, LARGE_FILE_BYTES))))


class SQLiteVectorStore(VectorStore):
    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database
        # Keyword indexes known to exist (vector_fts_<id>, made on a version's first
        # keyword search, dropped with its chunks).
        self._keyword_tables: set[str] = set()

    # -- datasets ---------------------------------------------------------
    async def create_dataset(self, new: NewDataset) -> Dataset:
        dataset_id = str(new.id)
        # Hashed before the write: the writer thread is everyone's.
        digests = await asyncio.to_thread(
            lambda: [sha256_of(document.content) for document in new.documents])

        def insert(tx: WriteTx) -> None:
            tx.conn.execute(
                "INSERT INTO datasets (id, version_id, tenant, name, file_count, total_bytes,"
                " created_by, metadata_columns, skipped_files, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (dataset_id, str(uuid.uuid4()), new.tenant, new.name, len(new.documents),
                 sum(len(document.content) for document in new.documents), new.created_by,
                 dump_json(mapping.columns_json(list(new.metadata_columns))),
                 dump_json(mapping.bad_files_json(new.skipped_files)), tx.now))
            tx.conn.executemany(
                _INSERT_FILE,
                [(dataset_id, position, document.name, document.kind.value,
                  len(document.content), whole(document.content),
                  dump_json(dict(document.metadata)), digests[position],
                  True) for position, document in enumerate(new.documents)
                 if len(document.content) <= LARGE_FILE_BYTES])
            for position, document in enumerate(new.documents):
                if len(document.content) > LARGE_FILE_BYTES:
                    _write_large_file(tx.conn, dataset_id, position, document,
                                      digests[position])
            # SQLite keeps a copy of a prepared statement's last values until it is bound
            # again, and Python keeps the statement: bound to nothing, the statement lets
            # go of the last file (a 160 MB one stayed in memory until the next upload).
            tx.conn.execute(_INSERT_FILE, (None,) * 8 + (False,))

        await self._db.write(insert, bump=False)
        return await self.get_dataset(new.id, new.tenant)

    async def get_dataset(self, dataset_id: UUID, tenant: str | None) -> Dataset:
        row = self._db.query_one("SELECT * FROM datasets WHERE id = ?", (str(dataset_id),))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise DatasetNotFound(dataset_id)
        return mapping.dataset(row, DECODE, row["file_count"])

    async def list_datasets(self, page: Page) -> tuple[list[Dataset], int]:
        where, params = _tenant_filter(page.tenant)
        total = self._db.query(f"SELECT COUNT(*) FROM datasets{where}", params)[0][0]
        rows = self._db.query(f"SELECT * FROM datasets{where} ORDER BY created_at DESC, id DESC"
                              " LIMIT ? OFFSET ?", [*params, page.limit, page.offset])
        return [mapping.dataset(row, DECODE, row["file_count"]) for row in rows], int(total)

    async def delete_dataset(self, dataset_id: UUID, tenant: str | None) -> None:
        await self.get_dataset(dataset_id, tenant)

        def delete(tx: WriteTx) -> None:
            tx.conn.execute("DELETE FROM datasets WHERE id = ?", (str(dataset_id),))

        await self._db.write(delete, bump=False)

    async def update_dataset(self, dataset_id: UUID, tenant: str | None, name: str | None,
                             categories: Sequence[str] | None) -> Dataset:
        await self.get_dataset(dataset_id, tenant)

        def update(tx: WriteTx) -> None:
            tx.conn.execute(
                "UPDATE datasets SET name = COALESCE(?, name),"
                " categories = COALESCE(?, categories) WHERE id = ?",
                (name, None if categories is None else dump_json(list(categories)),
                 str(dataset_id)))

        await self._db.write(update, bump=False)
        return await self.get_dataset(dataset_id, tenant)

    async def documents(self, dataset_id: UUID) -> list[DocumentInfo]:
        await self.get_dataset(dataset_id, None)
        rows = self._db.query("SELECT position, name, kind, size_bytes, metadata, digest"
                              " FROM dataset_files WHERE dataset_id = ? ORDER BY position",
                              (str(dataset_id),))
        return [mapping.document_info(row, DECODE) for row in rows]

    async def read_document(self, dataset_id: UUID, position: int) -> bytes:
        # One statement, one snapshot: the file's row first, then its parts, if any.
        rows = await self._read(
            "SELECT 0, size_bytes, content FROM dataset_files"
            " WHERE dataset_id = ?1 AND position = ?2"
            " UNION ALL SELECT 1 + part, NULL, content FROM dataset_file_parts"
            " WHERE dataset_id = ?1 AND position = ?2 ORDER BY 1",
            (str(dataset_id), position))
        if not rows or rows[0][0] != 0:
            raise DatasetNotFound(dataset_id)
        if len(rows) == 1:
            return bytes(rows[0][2])
        content = b"".join(row[2] for row in rows[1:])
        if len(content) != rows[0][1]:
            raise RuntimeError(f"document {position} of dataset {dataset_id} has "
                               f"{len(content):,} bytes in parts of {rows[0][1]:,}")
        return content

    # -- vector databases ---------------------------------------------------
    async def create_vector_database(self, new: NewVectorDatabase) -> VectorDatabase:
        vdb_id = str(new.id)
        dataset_ids = [str(each) for each in new.dataset_ids or (new.dataset_id,)]

        def insert(tx: WriteTx) -> sqlite3.Row:
            # The version is the family's next, numbered inside the insert; `?17` is the
            # family id given for `family_id` just before it.
            row: sqlite3.Row = tx.conn.execute(
                "INSERT INTO vector_databases (id, tenant, name, dataset_id, dataset_name,"
                " embedding_model, dimensions, chunk_size, chunk_overlap,"
                " chunk_overlap_percentage, separators, chunking_method, url, use_case_id,"
                " created_by, parent_id, family_id, version, dataset_ids, metadata_columns,"
                " created_at, updated_at, update_mode)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " (SELECT COALESCE(MAX(version), 0) + 1 FROM vector_databases"
                " WHERE family_id = ?17), ?, ?, ?, ?, ?) RETURNING *",
                (vdb_id, new.tenant, new.name, str(new.dataset_id), new.dataset_name,
                 new.embedding_model, new.dimensions, new.chunk_size, new.chunk_overlap,
                 new.chunk_overlap_percentage, dump_json(list(new.separators)),
                 new.chunking_method, new.url, new.use_case_id, new.created_by,
                 _text(new.parent_id), str(new.family_id or new.id),
                 dump_json(dataset_ids), dump_json(list(new.metadata_columns)), tx.now,
                 tx.now, new.update_mode.value)).fetchone()
            tx.conn.execute("INSERT INTO vector_families (family_id, tenant, updated_at)"
                            " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                            (str(new.family_id or new.id), new.tenant, tx.now))
            return row

        row, _ = await self._db.write(insert, bump=False)
        return mapping.vector_database(row, DECODE)

    async def set_build_job(self, vdb_id: UUID, job_id: UUID) -> None:
        def update(tx: WriteTx) -> None:
            tx.conn.execute("UPDATE vector_databases SET build_job_id = ? WHERE id = ?"
                            " AND build_job_id IS NULL", (str(job_id), str(vdb_id)))

        await self._db.write(update, bump=False)

    async def get_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        row = self._db.query_one("SELECT * FROM vector_databases WHERE id = ?", (str(vdb_id),))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise VectorDatabaseNotFound(vdb_id)
        return mapping.vector_database(row, DECODE)

    async def list_vector_databases(
            self, query: VectorDatabaseQuery) -> tuple[list[VectorDatabase], int]:
        where, order, params = mapping.listing_sql(query, "?", "LIKE")
        total = self._db.query(f"SELECT COUNT(*) FROM vector_databases{where}", params)[0][0]
        rows = self._db.query(f"SELECT * FROM vector_databases{where}{order} LIMIT ? OFFSET ?",
                              [*params, query.page.limit, query.page.offset])
        return [mapping.vector_database(row, DECODE) for row in rows], int(total)

    async def count_vector_databases(self, tenant: str | None) -> int:
        where, params = _tenant_filter(tenant)
        return int(self._db.query(f"SELECT COUNT(*) FROM vector_databases{where}",
                                  params)[0][0])

    async def rename_vector_database(self, vdb_id: UUID, tenant: str | None,
                                     name: str) -> VectorDatabase:
        await self.get_vector_database(vdb_id, tenant)

        def rename(tx: WriteTx) -> sqlite3.Row | None:
            found: sqlite3.Row | None = tx.conn.execute(
                "UPDATE vector_databases SET name = ?, updated_at = ? WHERE id = ? RETURNING *",
                (name, tx.now, str(vdb_id))).fetchone()
            return found

        row, _ = await self._db.write(rename, bump=False)
        if row is None:  # deleted meanwhile
            raise VectorDatabaseNotFound(vdb_id)
        return mapping.vector_database(row, DECODE)

    async def delete_vector_database(self, vdb_id: UUID, tenant: str | None) -> VectorDatabase:
        vdb = await self.get_vector_database(vdb_id, tenant)

        def delete(tx: WriteTx) -> None:
            tx.conn.execute(f"DROP TABLE IF EXISTS {_keyword_table_name(vdb_id)}")
            tx.conn.execute("DELETE FROM vector_databases WHERE id = ?", (str(vdb_id),))
            family_id = str(vdb.family_id)
            # Searches of the family move to its newest other built version, if any.
            tx.conn.execute(
                "UPDATE vector_families SET updated_at = ?1, active_id = (SELECT id FROM"
                " vector_databases WHERE family_id = ?2 AND built_at IS NOT NULL ORDER BY"
                " version DESC LIMIT 1) WHERE family_id = ?2 AND active_id = ?3",
                (tx.now, family_id, str(vdb_id)))
            tx.conn.execute("DELETE FROM vector_families WHERE family_id = ?1 AND NOT EXISTS"
                            " (SELECT 1 FROM vector_databases WHERE family_id = ?1)",
                            (family_id,))

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
        return mapping.vector_database(row, DECODE)

    async def add_chunks(self, vdb_id: UUID, build_id: UUID, first_seq: int,
                         chunks: Sequence[NewChunk]) -> None:
        def insert(tx: WriteTx) -> None:
            _check_owner(tx, vdb_id, build_id)
            tx.conn.executemany(_INSERT_CHUNK, mapping.chunk_values(str(vdb_id), first_seq,
                                                                    chunks, dump_json))

        await self._db.write(insert, bump=False)

    async def copy_chunk_ranges(self, vdb_id: UUID, build_id: UUID, parent_id: UUID,
                                ranges: Sequence[CopiedRange]) -> int:
        def copy(tx: WriteTx) -> int:
            _check_owner(tx, vdb_id, build_id)
            if tx.conn.execute("SELECT 1 FROM vector_databases WHERE id = ? AND built_at"
                               " IS NOT NULL", (str(parent_id),)).fetchone() is None:
                raise VectorDatabaseNotFound(parent_id)
            copied = 0
            for each in ranges:
                params = (str(vdb_id), each.first_seq - each.parent_first, str(parent_id),
                          each.parent_first, each.parent_first + each.count)
                tx.conn.execute(
                    "INSERT INTO vector_chunks (vdb_id, seq, document, position, page,"
                    " start_char, end_char, text, metadata, content_key, kind)"
                    " SELECT ?1, seq + ?2, document, position, page, start_char, end_char,"
                    " text, metadata, content_key, kind FROM vector_chunks"
                    " WHERE vdb_id = ?3 AND seq >= ?4 AND seq < ?5", params)
                copied += int(tx.conn.execute(
                    "SELECT COALESCE(SUM(length(CAST(text AS BLOB))), 0) FROM vector_chunks"
                    " WHERE vdb_id = ?3 AND seq >= ?4 AND seq < ?5", params).fetchone()[0])
            return copied

        copied, _ = await self._db.write(copy, bump=False)
        return copied

    async def chunks_without_keys(self, vdb_id: UUID, after_seq: int,
                                  limit: int) -> list[tuple[int, str]]:
        rows = await self._read(
            "SELECT seq, text FROM vector_chunks WHERE vdb_id = ? AND seq > ?"
            " AND content_key IS NULL ORDER BY seq LIMIT ?", (str(vdb_id), after_seq, limit))
        return [(int(row[0]), row[1]) for row in rows]

    async def set_content_keys(self, vdb_id: UUID, keys: Sequence[tuple[int, str]]) -> None:
        def update(tx: WriteTx) -> None:
            tx.conn.executemany("UPDATE vector_chunks SET content_key = ? WHERE vdb_id = ?"
                                " AND seq = ?", [(key, str(vdb_id), seq) for seq, key in keys])

        await self._db.write(update, bump=False)

    async def chunk_keys(self, vdb_id: UUID, first_seq: int, count: int) -> dict[int, str]:
        rows = self._db.query("SELECT seq, content_key FROM vector_chunks WHERE vdb_id = ?"
                              " AND seq >= ? AND seq < ?",
                              (str(vdb_id), first_seq, first_seq + count))
        return {int(seq): key for seq, key in rows}

    async def earlier_chunks(self, vdb_id: UUID, keys: Sequence[str],
                             before_seq: int) -> dict[str, int]:
        found: dict[str, int] = {}
        for first in range(0, len(keys), KEYS_PER_QUERY):
            part = keys[first:first + KEYS_PER_QUERY]
            rows = self._db.query(
                # `+`: look keys up in their index, not every chunk before `before_seq`.
                "SELECT content_key, MIN(seq) FROM vector_chunks WHERE +vdb_id = ?"
                f" AND +seq < ? AND content_key IN ({', '.join('?' for _ in part)})"
                " GROUP BY content_key", [str(vdb_id), before_seq, *part])
            found.update((key, int(seq)) for key, seq in rows)
        return found

    async def family_chunks(self, family_id: UUID,
                            keys: Sequence[str]) -> dict[str, tuple[UUID, int]]:
        found: dict[str, tuple[UUID, int]] = {}
        for first in range(0, len(keys), KEYS_PER_QUERY):
            part = keys[first:first + KEYS_PER_QUERY]
            rows = self._db.query(
                "SELECT c.content_key, c.vdb_id, c.seq FROM vector_chunks AS c"
                " JOIN vector_databases AS v ON v.id = c.vdb_id"
                f" WHERE c.content_key IN ({', '.join('?' for _ in part)})"
                " AND v.family_id = ? AND v.built_at IS NOT NULL",
                [*part, str(family_id)])
            for key, vdb_id, seq in rows:
                found.setdefault(key, (UUID(vdb_id), int(seq)))
        return found

    async def vectors_at(self, vdb_id: UUID, seqs: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for low, high in mapping.seq_spans(seqs):
            rows = self._db.query(
                "SELECT first_seq, count, vectors FROM vector_batches WHERE vdb_id = ?"
                " AND first_seq <= ? AND first_seq + count > ? ORDER BY first_seq",
                (str(vdb_id), high, low))
            for first_seq, count, vectors in rows:
                found.update(mapping.rows_of_batch(int(first_seq), int(count), bytes(vectors),
                                                   seqs))
        return found

    async def chunk_texts_at(self, vdb_id: UUID, seqs: Sequence[int]) -> dict[int, str]:
        texts: dict[int, str] = {}
        for first in range(0, len(seqs), KEYS_PER_QUERY):
            part = list(seqs[first:first + KEYS_PER_QUERY])
            rows = self._db.query(
                "SELECT seq, text FROM vector_chunks WHERE vdb_id = ?"
                f" AND seq IN ({', '.join('?' for _ in part)})", [str(vdb_id), *part])
            texts.update((int(seq), text) for seq, text in rows)
        return texts

    async def add_vectors(self, vdb_id: UUID, build_id: UUID, first_seq: int, count: int,
                          vectors: bytes) -> None:
        def insert(tx: WriteTx) -> None:
            _check_owner(tx, vdb_id, build_id)
            tx.conn.execute("INSERT INTO vector_batches (vdb_id, first_seq, count, vectors)"
                            " VALUES (?, ?, ?, ?)", (str(vdb_id), first_seq, count, vectors))

        await self._db.write(insert, bump=False)

    async def finish_build(self, vdb_id: UUID, build_id: UUID, outcome: BuildOutcome) -> bool:
        def finish(tx: WriteTx) -> bool:
            _check_owner(tx, vdb_id, build_id)
            row = tx.conn.execute(
                "UPDATE vector_databases SET chunk_count = ?, built_at = ?, updated_at = ?,"
                " size_bytes = ?, skipped_documents = ?, changes = ? WHERE id = ?"
                " RETURNING family_id",
                (outcome.chunk_count, tx.now, tx.now, outcome.size_bytes,
                 dump_json(mapping.skipped_documents_json(outcome.skipped)),
                 dump_json(dict(outcome.changes)), str(vdb_id))).fetchone()
            tx.conn.executemany(_INSERT_DOCUMENT,
                                mapping.document_values(str(vdb_id), outcome.records))
            moved = tx.conn.execute(
                "UPDATE vector_families SET active_id = ?, updated_at = ? WHERE family_id = ?"
                " AND (active_id IS NULL OR active_id = ? OR active_id = ?)",
                (str(vdb_id), tx.now, row[0], _text(outcome.parent_id), str(vdb_id)))
            return moved.rowcount > 0

        moved, _ = await self._db.write(finish, bump=False)
        return moved

    async def discard_build(self, vdb_id: UUID, build_id: UUID) -> None:
        def discard(tx: WriteTx) -> None:
            row = tx.conn.execute("SELECT build_id FROM vector_databases WHERE id = ?",
                                  (str(vdb_id),)).fetchone()
            if row is not None and row[0] == str(build_id):
                _clear(tx, vdb_id)

        await self._db.write(discard, bump=False)

    async def document_records(self, vdb_id: UUID) -> list[DocumentRecord]:
        rows = self._db.query("SELECT * FROM vector_documents WHERE vdb_id = ?"
                              " ORDER BY ordinal", (str(vdb_id),))
        if rows:
            return [mapping.document_record(row) for row in rows]
        return mapping.legacy_records(self._db.query(
            "SELECT document, MIN(seq) AS first_seq, COUNT(*) AS chunk_count"
            " FROM vector_chunks WHERE vdb_id = ? GROUP BY document ORDER BY 2",
            (str(vdb_id),)))

    # -- families -----------------------------------------------------------
    async def get_family(self, family_id: UUID, tenant: str | None) -> Family:
        row = self._db.query_one("SELECT * FROM vector_families WHERE family_id = ?",
                                 (str(family_id),))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise VectorDatabaseNotFound(family_id)
        return mapping.family(row, DECODE)

    async def family_versions(self, family_id: UUID) -> list[VectorDatabase]:
        rows = self._db.query("SELECT * FROM vector_databases WHERE family_id = ?"
                              " ORDER BY version", (str(family_id),))
        return [mapping.vector_database(row, DECODE) for row in rows]

    async def set_active_version(self, family_id: UUID, vdb_id: UUID) -> Family:
        def point(tx: WriteTx) -> sqlite3.Row:
            version = tx.conn.execute("SELECT built_at FROM vector_databases WHERE id = ?"
                                      " AND family_id = ?",
                                      (str(vdb_id), str(family_id))).fetchone()
            if version is None:
                raise VectorDatabaseNotFound(vdb_id)
            if version[0] is None:
                raise NotBuilt(f"vector database {vdb_id} is not built: only a COMPLETED "
                               "version can answer its family's searches")
            row: sqlite3.Row = tx.conn.execute(
                "UPDATE vector_families SET active_id = ?, updated_at = ? WHERE family_id = ?"
                " RETURNING *", (str(vdb_id), tx.now, str(family_id))).fetchone()
            return row

        row, _ = await self._db.write(point, bump=False)
        return mapping.family(row, DECODE)

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

    async def keyword_search(self, vdb_id: UUID, question: str,
                             limit: int) -> list[tuple[int, float]]:
        query = fts5_query(question)
        if query is None:
            return []
        table = await self._keyword_table(vdb_id)
        sql = (f"SELECT rowid, bm25({table}) FROM {table} WHERE {table} MATCH ?"
               f" ORDER BY bm25({table}) LIMIT ?")
        # Off the loop (a question of common words ranks many chunks), on the store's
        # kept reader connections: a search must not open a connection of its own.
        rows = await self._db.read_off_loop(
            lambda conn: conn.execute(sql, (query, limit)).fetchall())
        return [(int(row[0]), -float(row[1])) for row in rows]

    async def _keyword_table(self, vdb_id: UUID) -> str:
        """The version's FTS5 index (BM25), made from its chunks on first use: a version's
        chunks never change once built, and a table of its own keeps the statistics of
        its own text (another version's copies would skew them) and the look-up small."""
        table = _keyword_table_name(vdb_id)
        if table in self._keyword_tables:
            return table
        if self._db.query_one("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)) is None:

            def index(tx: WriteTx) -> None:
                tx.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(text,"
                                " content='', tokenize='porter unicode61 remove_diacritics 2')")
                tx.conn.execute(f"INSERT INTO {table} (rowid, text) SELECT seq, text FROM"
                                " vector_chunks WHERE vdb_id = ?", (str(vdb_id),))

            await self._db.write(index, bump=False)
        self._keyword_tables.add(table)
        return table

    async def chunk_fields(self, vdb_id: UUID) -> list[ChunkFields]:
        rows = await self._read("SELECT document, kind, page, metadata FROM vector_chunks"
                                " WHERE vdb_id = ? ORDER BY seq", (str(vdb_id),))
        return [(row[0], row[1], row[2], load_json(row[3])) for row in rows]

    async def chunks(self, vdb_id: UUID, seqs: Sequence[int]) -> list[Chunk]:
        if not seqs:
            return []
        rows = self._db.query(
            f"SELECT {mapping.CHUNK_COLUMNS} FROM vector_chunks WHERE vdb_id = ?"
            f" AND seq IN ({', '.join('?' for _ in seqs)})", [str(vdb_id), *seqs])
        return [mapping.chunk(row, DECODE) for row in rows]

    async def chunk_range(self, vdb_id: UUID, first_seq: int, count: int) -> list[Chunk]:
        rows = self._db.query(f"SELECT {mapping.CHUNK_COLUMNS} FROM vector_chunks"
                              " WHERE vdb_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
                              (str(vdb_id), first_seq, first_seq + count))
        return [mapping.chunk(row, DECODE) for row in rows]

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


def _keyword_table_name(vdb_id: UUID) -> str:
    return f"vector_fts_{vdb_id.hex}"  # hex digits only: safe in SQL as a name


def _clear(tx: WriteTx, vdb_id: UUID) -> None:
    tx.conn.execute(f"DROP TABLE IF EXISTS {_keyword_table_name(vdb_id)}")
    tx.conn.execute("DELETE FROM vector_chunks WHERE vdb_id = ?", (str(vdb_id),))
    tx.conn.execute("DELETE FROM vector_batches WHERE vdb_id = ?", (str(vdb_id),))
    tx.conn.execute("DELETE FROM vector_documents WHERE vdb_id = ?", (str(vdb_id),))
    tx.conn.execute("UPDATE vector_databases SET chunk_count = 0, built_at = NULL,"
                    " skipped_documents = '[]', changes = '{}' WHERE id = ?", (str(vdb_id),))


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


DECODE = mapping.Decoder(uuid=UUID, time=from_epoch, json=load_json)
