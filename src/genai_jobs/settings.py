"""Service settings, read from `GENAI_JOBS_*` variables; CLI flags override them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./genai-jobs.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENAI_JOBS_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL only: connections per process, and the longest a statement may run.
    database_pool_size: int = Field(default=10, ge=1)
    database_statement_timeout_seconds: float = Field(default=30.0, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Modules whose `MODULE:ATTR` registry adds job types to the built-in ones;
    # in the environment, separated by spaces or commas.
    app: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Submissions
    default_expires_in_seconds: float = Field(default=24 * 3600, gt=0)
    max_expires_in_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    default_max_attempts: int = Field(default=3, ge=1)
    max_max_attempts: int = Field(default=20, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)

    # Workers
    workers: int = Field(default=1, ge=0)
    concurrency: int = Field(default=4, ge=1)
    lease_seconds: float = Field(default=30.0, gt=0)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # After the grace, how long handlers told to stop may take before the process
    # leaves their jobs to lease expiry (a sync handler may ignore the request).
    shutdown_stop_wait_seconds: float = Field(default=10.0, ge=0)
    idle_poll_seconds: float = Field(default=1.0, gt=0)

    # Maintenance
    maintenance_interval_seconds: float = Field(default=1.0, gt=0)
    # How long a worker may take to stop a handler past its deadline before
    # the maintenance sweep writes EXPIRED itself (the worker is presumed lost).
    deadline_grace_seconds: float = Field(default=10.0, ge=0)
    retention_seconds: float = Field(default=7 * 24 * 3600, gt=0)

    # HTTP
    # Trust X-Forwarded-Proto/Host when building absolute URLs (behind a proxy).
    behind_proxy: bool = False
    # The longest a `waitSeconds` long-poll is held (API.md allows up to 60).
    max_wait_seconds: int = Field(default=60, ge=0, le=60)
    # FastAPI's native OpenTelemetry tracing, metrics and logs (global providers; set
    # OTEL_* variables and FASTAPI_OTEL_AUTO_CONFIGURE=true to export them).
    opentelemetry: bool = False
    # Connections (genai_jobs.api.connections): how long a connection may wait on its
    # client for a request's head, between parts of its body, and with its answer
    # unread; and how many may be open at once (kept below the open-file limit).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    http_write_stall_timeout_seconds: float = Field(default=30.0, gt=0)
    http_max_connections: int = Field(default=10_000, ge=1)
    # How long an idle connection is kept open for the client's next request. Longer than
    # the 5 s that DataRobot's SDK sleeps between status polls: at uvicorn's own 5 s the
    # server closed the connection just as the SDK sent its next poll on it (a reset).
    http_keep_alive_seconds: int = Field(default=15, ge=1)
    # Expensive requests (genai_jobs.api.admission): how many big pages (limit > 100)
    # and uploads run at once, and how long one waits for its turn before a 503. One
    # page at a time: the database writes it (~20 ms for 1,000 jobs) on a core of its
    # own; four at once took both cores and tripled a status poll's p99 beside them.
    max_concurrent_big_pages: int = Field(default=1, ge=1)
    max_concurrent_uploads: int = Field(default=2, ge=1)
    # The bodies of all uploads, taken in at most this fast (bytes a second; 0: no bound):
    # receiving and parsing them is the event loop's work (api/admission.py).
    upload_bytes_per_second: int = Field(default=100_000_000, ge=0)
    # The answers of all big pages, sent at most this fast (bytes a second; 0: no bound):
    # sending and reading them takes the cores polls need (api/shared_pages.py; at
    # 100 MB/s, 400 different pages took ~45 % of the loop on 2 cores).
    page_bytes_per_second: int = Field(default=50_000_000, ge=0)
    busy_queue_seconds: float = Field(default=30.0, ge=0)
    # `genai-jobs worker` serves its Prometheus metrics on this port when set.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("app", mode="before")
    @classmethod
    def _split_apps(cls, value: object) -> object:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        return [part for item in items for part in re.split(r"[\s,]+", str(item)) if part]

    @model_validator(mode="after")
    def _defaults_within_maximums(self) -> Settings:
        if self.default_expires_in_seconds > self.max_expires_in_seconds:
            raise ValueError("default_expires_in_seconds exceeds max_expires_in_seconds")
        if self.default_max_attempts > self.max_max_attempts:
            raise ValueError("default_max_attempts exceeds max_max_attempts")
        return self
