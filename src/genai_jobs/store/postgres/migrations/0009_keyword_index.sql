-- Keyword search (vectors/keywords.py): each chunk's text as PostgreSQL's full-text
-- engine reads it, kept by the database itself, and its inverted index.
ALTER TABLE vector_chunks ADD COLUMN tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX vector_chunks_tsv ON vector_chunks USING gin (tsv);
