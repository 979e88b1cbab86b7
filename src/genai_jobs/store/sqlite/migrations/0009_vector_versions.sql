-- Incremental versions of vector databases (vectors/build.py, vectors/plan.py).
--
-- A dataset file's sha256, taken at upload, tells an update which documents
-- changed without reading them again (NULL for files uploaded before: an update
-- reads and hashes those).
ALTER TABLE dataset_files ADD COLUMN digest TEXT;

-- A chunk's content key (sha256 of its text, the model and the chunking) finds a
-- vector already made in the family; its document's type is a search filter.
ALTER TABLE vector_chunks ADD COLUMN content_key TEXT;
ALTER TABLE vector_chunks ADD COLUMN kind TEXT;
CREATE INDEX vector_chunks_content ON vector_chunks (content_key)
    WHERE content_key IS NOT NULL;

-- What a version holds, document by document, in order: the record an update
-- compares the new dataset with, and verify checks the index against. A document
-- without text is here with no chunks.
CREATE TABLE vector_documents (
    vdb_id       TEXT NOT NULL REFERENCES vector_databases (id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    digest       TEXT NOT NULL,
    first_seq    INTEGER NOT NULL,
    chunk_count  INTEGER NOT NULL,
    PRIMARY KEY (vdb_id, ordinal)
);

-- How a version was made from its parent ('add' or 'replace') and what changed.
ALTER TABLE vector_databases ADD COLUMN update_mode TEXT NOT NULL DEFAULT 'add';
ALTER TABLE vector_databases ADD COLUMN changes TEXT NOT NULL DEFAULT '{}';

-- The version a family's searches use: moved by a completed build (from its
-- parent only) or by hand (a rollback). A family's highest built version answers
-- for the families made before.
CREATE TABLE vector_families (
    family_id    TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    active_id    TEXT,
    updated_at   REAL NOT NULL
);
INSERT INTO vector_families (family_id, tenant, active_id, updated_at)
    SELECT family_id, MIN(tenant),
           (SELECT built.id FROM vector_databases AS built
             WHERE built.family_id = versions.family_id AND built.built_at IS NOT NULL
             ORDER BY built.version DESC LIMIT 1),
           MAX(updated_at)
      FROM vector_databases AS versions GROUP BY family_id;
