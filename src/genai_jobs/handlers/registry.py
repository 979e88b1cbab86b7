"""Job types and the registry that names them.

A user module builds a Registry and the service loads it with
`--app module:attribute`:

    registry = Registry()

    class Embed(BaseModel):
        texts: list[str]

    @registry.job_type("corpus.embed", payload=Embed, attempt_timeout=600)
    async def embed(ctx: JobContext, payload: Embed) -> dict[str, int]:
        ...
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from genai_jobs.handlers.context import JobContext

Handler = Callable[[JobContext, Any], Any] | Callable[[JobContext, Any], Awaitable[Any]]
H = TypeVar("H", bound=Callable[..., Any])


class PermanentError(Exception):
    """Raised by a handler for a failure that retrying cannot fix: the job is ERROR at once."""


@dataclass(frozen=True, slots=True)
class ResultLocation:
    """A handler's answer when its result is a resource it created elsewhere."""

    url: str
    result: Any = None


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    description: str
    payload_model: type[BaseModel]
    handler: Handler
    # Seconds one attempt may run before it is stopped and counted as failed.
    attempt_timeout: float | None = None
    # Why this process cannot run it (a missing optional dependency), if it cannot.
    unavailable_reason: str | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def payload_schema(self) -> dict[str, Any]:
        return self.payload_model.model_json_schema()


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, job_type: JobType) -> None:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type

    def job_type(
        self,
        name: str,
        *,
        payload: type[BaseModel],
        description: str = "",
        attempt_timeout: float | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated function as the handler of job type `name`."""

        def register(handler: H) -> H:
            doc = description or inspect.getdoc(handler) or ""
            self.add(JobType(name, doc.split("\n\n")[0], payload, handler, attempt_timeout))
            return handler

        return register

    def include(self, other: Registry) -> None:
        for job_type in other:
            self.add(job_type)

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._types)

    def __iter__(self) -> Iterator[JobType]:
        return iter(sorted(self._types.values(), key=lambda job_type: job_type.name))

    def __len__(self) -> int:
        return len(self._types)


def load_registry(apps: list[str]) -> Registry:
    """The built-in job types plus those of each `module:attribute` in `apps`."""
    from genai_jobs.handlers.diagnostics import registry as builtins
    from genai_jobs.vectors.build import registry as vectors
    from genai_jobs.vectors.verify import registry as verify

    combined = Registry()
    combined.include(builtins)
    combined.include(vectors)
    combined.include(verify)
    for spec in apps:
        combined.include(_import_registry(spec))
    return combined


def _import_registry(spec: str) -> Registry:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--app wants MODULE:ATTRIBUTE, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for --app {spec}: {exc}") from exc
    found = getattr(module, attribute, None)
    if not isinstance(found, Registry):
        raise ValueError(f"--app {spec}: {module_name}.{attribute} is not a genai_jobs Registry")
    return found
