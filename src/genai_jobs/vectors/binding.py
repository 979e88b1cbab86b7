"""The job store this process opened, for the build handler.

Handlers receive a JobContext and their payload, nothing of the store; the
build must read datasets and write vectors, so the process that opens the
store binds it here (runtime.opened_store does, for `serve` and `worker`).
"""

from __future__ import annotations

from genai_jobs.store import Store

_bound: Store | None = None


def bind_store(store: Store) -> None:
    global _bound
    _bound = store


def bound_store() -> Store:
    if _bound is None:
        raise RuntimeError("no store is bound in this process: vector database builds run "
                           "in `genai-jobs serve` or `genai-jobs worker`")
    return _bound
