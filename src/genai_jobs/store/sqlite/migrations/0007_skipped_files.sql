-- What was left out, and why: shown on the dataset and the vector database.

-- The bad files an upload asked to skip (skipBadFiles), JSON:
-- [{"name": ..., "type": "empty_file" | "corrupt_pdf" | ..., "reason": ...}, ...].
ALTER TABLE datasets ADD COLUMN skipped_files TEXT NOT NULL DEFAULT '[]';
-- The documents of its datasets that its build left out of the index (no text to
-- index, such as a scanned PDF), JSON: [{"name": ..., "reason": ...}, ...]; written
-- when the build finishes, with the parent's for a version.
ALTER TABLE vector_databases ADD COLUMN skipped_documents TEXT NOT NULL DEFAULT '[]';
