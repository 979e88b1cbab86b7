"""What this server can build and search, in DataRobot's shapes, and the checks that hold
a vector database's request to it.

The supported embeddings, chunkings and retrieval settings are not a copy of
DataRobot's lists: they say what is really here (the models installed, the one
chunking method, the bounds `chunking_of` enforces), so that a script that
reads them first builds something that works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genai_jobs.vectors.embeddings import DEFAULT_MODEL, MODELS, ModelSpec
from genai_jobs.vectors.schemas import (
    CHUNKING_METHOD,
    DEFAULT_SEPARATORS,
    MAX_K,
    MAX_OVERLAP_PERCENTAGE,
    MAX_SEPARATORS,
    ChunkingParametersRequest,
)

DEFAULT_OVERLAP_PERCENTAGE = 0
DEFAULT_K = 5


def default_chunk_size(spec: ModelSpec) -> int:
    """What the model reads whole: its longest input less the two special tokens."""
    return spec.max_chunk_tokens


def max_chunk_size(spec: ModelSpec) -> int:
    """DataRobot accepts chunks as long as the model's whole input (a DataRobot script
    builds MiniLM databases with 256); the model then reads all but the last two tokens
    of the longest chunks (docs/reference/datarobot.md)."""
    return spec.max_tokens


@dataclass(frozen=True, slots=True)
class ChunkingChoice:
    """A request's chunking, with every default filled in and every bound checked."""

    spec: ModelSpec
    method: str
    size: int
    overlap_percentage: int
    separators: tuple[str, ...]

    @property
    def overlap_tokens(self) -> int:
        return self.size * self.overlap_percentage // 100


class ChunkingRefused(ValueError):
    """A chunking this server cannot build; `field` is the request's key at fault."""

    def __init__(self, field: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


def chunking_of(request: ChunkingParametersRequest, spec: ModelSpec) -> ChunkingChoice:
    if request.embedding_validation_id is not None:
        raise ChunkingRefused("embeddingValidationId", "not_supported",
                              "custom embedding models are not served here; use one of "
                              "GET vectorDatabases/supportedEmbeddings/")
    if request.custom_chunking:
        raise ChunkingRefused("customChunking", "not_supported",
                              "custom chunking is not supported: chunks are made here")
    if request.is_separator_regex:
        raise ChunkingRefused("isSeparatorRegex", "not_supported",
                              "separators are plain text here, not regular expressions")
    method = request.chunking_method or CHUNKING_METHOD
    if method != CHUNKING_METHOD:
        raise ChunkingRefused("chunkingMethod", "not_supported",
                              f"chunking method {method!r} is not supported; "
                              f"supported: {CHUNKING_METHOD!r}")
    size = request.chunk_size or default_chunk_size(spec)
    if size > max_chunk_size(spec):
        raise ChunkingRefused("chunkSize", "less_than_equal",
                              f"{spec.name} reads at most {max_chunk_size(spec)} tokens per "
                              "chunk")
    separators = DEFAULT_SEPARATORS if request.separators is None else tuple(request.separators)
    overlap = request.chunk_overlap_percentage
    return ChunkingChoice(spec, method, size,
                          DEFAULT_OVERLAP_PERCENTAGE if overlap is None else overlap, separators)


def supported_embeddings() -> dict[str, Any]:
    return {
        "embeddingModels": [{"embeddingModel": spec.name, "description": spec.description,
                             "maxSequenceLength": spec.max_tokens,
                             "languages": spec.languages} for spec in MODELS.values()],
        "defaultEmbeddingModel": DEFAULT_MODEL,
        "customModelEmbeddingValidations": [],
        "openaiEmbeddingValidations": [],
    }


def supported_text_chunkings() -> dict[str, Any]:
    return {"textChunkingConfigs": [
        {"embeddingModel": spec.name, "defaultMethod": CHUNKING_METHOD,
         "methods": [_recursive(spec)]} for spec in MODELS.values()]}


def _recursive(spec: ModelSpec) -> dict[str, Any]:
    return {
        "chunkingMethod": CHUNKING_METHOD,
        "description": "Split at the first separator that occurs, then the next, until each "
                       "piece fits the chunk size in the model's tokens; merge neighbouring "
                       "pieces up to that size. The separator \"\" cuts token windows.",
        "chunkingParameters": [
            {"name": "chunk_size", "type": "int", "description": "Tokens per chunk.",
             "default": default_chunk_size(spec), "min": 1, "max": max_chunk_size(spec)},
            {"name": "chunk_overlap_percentage", "type": "int",
             "description": "The share of a chunk's tokens that the next one repeats, in "
                            "whole pieces.",
             "default": DEFAULT_OVERLAP_PERCENTAGE, "min": 0, "max": MAX_OVERLAP_PERCENTAGE},
            {"name": "separators", "type": "list[str]",
             "description": "Plain-text separators, tried in order.",
             "default": list(DEFAULT_SEPARATORS), "min": 0, "max": MAX_SEPARATORS},
        ],
    }


def supported_retrieval_settings() -> dict[str, Any]:
    """Only what search takes: how many chunks it returns."""
    return {"settings": [{
        "name": "max_documents_retrieved_per_prompt", "type": "integer",
        "title": "Maximum chunks retrieved",
        "description": "How many chunks a search returns, best first (`k` of "
                       "POST vectorDatabases/{id}/search/).",
        "default": DEFAULT_K, "minimum": 1, "maximum": MAX_K,
    }]}
