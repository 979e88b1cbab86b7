"""Datasets in, searchable vector databases out.

datasets.py (uploads: types, limits, archives), extract.py (text out of
documents), chunking.py (token windows), embeddings.py (the model interface
and its loading), index.py (exact and HNSW search, the cache), search.py,
store/ (datasets, chunks and vectors beside the jobs), build.py (the
`vectorDatabase.build` job), api.py and schemas.py (HTTP), cli.py, client.py.

Only the upload and HTTP parts are imported by the base install; numpy, the
model and pypdf come with the `embeddings` extra and are imported where used.
"""
