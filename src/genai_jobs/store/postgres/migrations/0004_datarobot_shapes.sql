-- DataRobot's shapes of datasets and vector databases: what its SDK reads and sends.

-- A dataset has one version (uploads make new datasets), named as DataRobot names it.
-- DataRobot's intended uses of a dataset (TRAINING, PREDICTION), set by Dataset.modify.
ALTER TABLE datasets ADD COLUMN categories jsonb NOT NULL DEFAULT '[]';
ALTER TABLE datasets ADD COLUMN version_id uuid;
ALTER TABLE datasets ADD COLUMN created_by text NOT NULL DEFAULT '';
-- [{"name": ..., "type": "text" | "number" | "boolean" | "date"}, ...] of a CSV's
-- metadata columns; every document (row) has its values in dataset_files.metadata.
ALTER TABLE datasets ADD COLUMN metadata_columns jsonb NOT NULL DEFAULT '[]';
UPDATE datasets SET version_id = id;
ALTER TABLE dataset_files ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';

-- chunk_overlap stays the overlap in tokens (what builds use); the percentage is
-- what was asked for. Separators empty: fixed token windows.
ALTER TABLE vector_databases ADD COLUMN use_case_id text NOT NULL DEFAULT '';
ALTER TABLE vector_databases ADD COLUMN chunking_method text NOT NULL DEFAULT 'recursive';
ALTER TABLE vector_databases ADD COLUMN chunk_overlap_percentage integer NOT NULL DEFAULT 0;
ALTER TABLE vector_databases ADD COLUMN separators jsonb NOT NULL DEFAULT '[]';
-- Versions: a family is a root and the versions made from it; dataset_ids lists
-- every dataset whose documents the version holds, in the order they were added.
ALTER TABLE vector_databases ADD COLUMN parent_id uuid;
ALTER TABLE vector_databases ADD COLUMN family_id uuid;
ALTER TABLE vector_databases ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE vector_databases ADD COLUMN dataset_ids jsonb NOT NULL DEFAULT '[]';
ALTER TABLE vector_databases ADD COLUMN dataset_name text NOT NULL DEFAULT '';
ALTER TABLE vector_databases ADD COLUMN metadata_columns jsonb NOT NULL DEFAULT '[]';
ALTER TABLE vector_databases ADD COLUMN created_by text NOT NULL DEFAULT '';
ALTER TABLE vector_databases ADD COLUMN size_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE vector_databases ADD COLUMN updated_at timestamptz;
UPDATE vector_databases SET
    family_id = id,
    dataset_ids = jsonb_build_array(dataset_id::text),
    chunk_overlap_percentage = (100 * chunk_overlap / chunk_size),
    dataset_name = COALESCE((SELECT name FROM datasets WHERE datasets.id = dataset_id), ''),
    updated_at = created_at;
ALTER TABLE vector_databases ALTER COLUMN updated_at SET DEFAULT now();
-- A version's number is taken as it is inserted: two at once cannot share one.
CREATE UNIQUE INDEX vector_databases_family ON vector_databases (family_id, version);

-- Each chunk carries its document's metadata, so that a version whose chunks come
-- from several datasets needs none of them to export or filter.
ALTER TABLE vector_chunks ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
