"""Settings of datasets, builds and search, read from `GENAI_JOBS_*` variables."""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class VectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENAI_JOBS_", extra="ignore")

    # Uploads. One upload request's body, files and form framing together; it
    # replaces GENAI_JOBS_MAX_BODY_BYTES on the upload route only.
    dataset_max_upload_bytes: int = Field(default=512 * MIB, ge=1024)
    dataset_max_file_bytes: int = Field(default=50 * MIB, ge=1)
    dataset_max_files: int = Field(default=1000, ge=1)
    # Rows of a CSV dataset (each row is a document).
    dataset_max_rows: int = Field(default=100_000, ge=1)
    dataset_max_total_bytes: int = Field(default=500 * MIB, ge=1)
    # Bytes an archive may expand to, per byte of archive: more is a zip bomb.
    dataset_max_expansion_ratio: float = Field(default=100.0, ge=1)

    # Builds: chunks embedded and written per batch (abort and deadlines are
    # honoured between batches; progress is reported after each).
    vector_build_batch_size: int = Field(default=64, ge=1, le=4096)
    # Load the embedding model in the background when `serve` or `worker` starts,
    # so that the first build or search does not wait for it.
    preload_embeddings: bool = False

    # Search: vectors kept in memory by this process, across vector databases.
    vector_cache_bytes: int = Field(default=2048 * MIB, ge=0)
    # `hnsw` answers from a faiss HNSW graph (extra `ann`) once it is built in the
    # background for a database of at least `vector_ann_min_chunks` chunks.
    vector_search_index: Literal["exact", "hnsw"] = "exact"
    vector_ann_min_chunks: int = Field(default=10_000, ge=1)


@functools.cache
def vector_settings() -> VectorSettings:
    """This process's settings, read once."""
    return VectorSettings()
