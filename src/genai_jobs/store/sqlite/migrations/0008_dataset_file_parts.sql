-- A large file's bytes, a slice per row (vectors/store/sqlite.py). One value of
-- 160 MB made SQLite allocate and free 160 MB at once: the free's munmap locks the
-- process's memory map for ~11 ms, and the API's event loop waited for it. A file
-- kept here has an empty `content` in dataset_files (its size_bytes says how much
-- is here); its parts go with its dataset.
CREATE TABLE dataset_file_parts (
    dataset_id   TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    part         INTEGER NOT NULL,
    content      BLOB NOT NULL,
    PRIMARY KEY (dataset_id, position, part)
);
