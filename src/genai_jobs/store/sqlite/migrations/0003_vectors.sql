-- Datasets and vector databases (genai_jobs.vectors). Times are Unix seconds.
-- Dataset bytes live here, not on a host's disk, so that any worker can read them.

CREATE TABLE datasets (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    file_count   INTEGER NOT NULL,
    total_bytes  INTEGER NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX datasets_tenant_created ON datasets (tenant, created_at DESC);

-- One row per document (a zip is stored expanded, one row per member).
CREATE TABLE dataset_files (
    dataset_id   TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL,
    content      BLOB NOT NULL,
    PRIMARY KEY (dataset_id, position)
);

-- build_id names the attempt that owns the chunks and vectors now; every write
-- of a build checks it, so a superseded attempt can never mix rows into the index.
-- built_at is set, in the same transaction as the last check, once the index is whole.
CREATE TABLE vector_databases (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    name             TEXT NOT NULL,
    dataset_id       TEXT NOT NULL,
    embedding_model  TEXT NOT NULL,
    dimensions       INTEGER NOT NULL,
    chunk_size       INTEGER NOT NULL,
    chunk_overlap    INTEGER NOT NULL,
    url              TEXT NOT NULL DEFAULT '',
    build_job_id     TEXT,
    build_id         TEXT,
    chunk_count      INTEGER NOT NULL DEFAULT 0,
    built_at         REAL,
    created_at       REAL NOT NULL
);
CREATE INDEX vector_databases_tenant_created ON vector_databases (tenant, created_at DESC);

CREATE TABLE vector_chunks (
    vdb_id       TEXT NOT NULL REFERENCES vector_databases (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    document     TEXT NOT NULL,
    position     INTEGER NOT NULL,
    page         INTEGER,
    start_char   INTEGER NOT NULL,
    end_char     INTEGER NOT NULL,
    text         TEXT NOT NULL,
    PRIMARY KEY (vdb_id, seq)
);

-- Vectors of chunks first_seq .. first_seq + count - 1, float32 little-endian, row-major.
CREATE TABLE vector_batches (
    vdb_id     TEXT NOT NULL REFERENCES vector_databases (id) ON DELETE CASCADE,
    first_seq  INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    vectors    BLOB NOT NULL,
    PRIMARY KEY (vdb_id, first_seq)
);
