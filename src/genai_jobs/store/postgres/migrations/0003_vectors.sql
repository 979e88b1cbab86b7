-- Datasets and vector databases (genai_jobs.vectors).
-- Dataset bytes live here, not on a host's disk, so that any worker can read them.

CREATE TABLE datasets (
    id           uuid PRIMARY KEY,
    tenant       text NOT NULL,
    name         text NOT NULL,
    file_count   integer NOT NULL,
    total_bytes  bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_tenant_created ON datasets (tenant, created_at DESC, id DESC);

-- One row per document (a zip is stored expanded, one row per member).
CREATE TABLE dataset_files (
    dataset_id   uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    size_bytes   bigint NOT NULL,
    content      bytea NOT NULL,
    PRIMARY KEY (dataset_id, position)
);

-- build_id names the attempt that owns the chunks and vectors now; every write
-- of a build checks it (under a row lock), so a superseded attempt can never mix
-- rows into the index. built_at is set once the index is whole.
CREATE TABLE vector_databases (
    id               uuid PRIMARY KEY,
    tenant           text NOT NULL,
    name             text NOT NULL,
    dataset_id       uuid NOT NULL,
    embedding_model  text NOT NULL,
    dimensions       integer NOT NULL,
    chunk_size       integer NOT NULL,
    chunk_overlap    integer NOT NULL,
    url              text NOT NULL DEFAULT '',
    build_job_id     uuid,
    build_id         uuid,
    chunk_count      integer NOT NULL DEFAULT 0,
    built_at         timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vector_databases_tenant_created ON vector_databases (tenant, created_at DESC, id DESC);

CREATE TABLE vector_chunks (
    vdb_id       uuid NOT NULL REFERENCES vector_databases (id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    document     text NOT NULL,
    position     integer NOT NULL,
    page         integer,
    start_char   integer NOT NULL,
    end_char     integer NOT NULL,
    text         text NOT NULL,
    PRIMARY KEY (vdb_id, seq)
);

-- Vectors of chunks first_seq .. first_seq + count - 1, float32 little-endian, row-major.
CREATE TABLE vector_batches (
    vdb_id     uuid NOT NULL REFERENCES vector_databases (id) ON DELETE CASCADE,
    first_seq  integer NOT NULL,
    count      integer NOT NULL,
    vectors    bytea NOT NULL,
    PRIMARY KEY (vdb_id, first_seq)
);
-- Float vectors do not compress: store them out of line without trying.
ALTER TABLE vector_batches ALTER COLUMN vectors SET STORAGE EXTERNAL;
