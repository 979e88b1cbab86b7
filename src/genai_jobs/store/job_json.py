"""A job's API document (JobResponse's JSON), as each store's SQL writes it.

A listing of 1,000 jobs built in Python (rows -> records -> pydantic -> JSON)
holds the interpreter lock for ~75 ms, and every status poll answered meanwhile
waits behind it. The databases can write the same JSON themselves: SQLite does
it inside `sqlite3_step`, which runs without the lock, PostgreSQL in its own
process. The route then only wraps the array in the page's envelope.

The field list below is JobResponse's, in its order, with the column each
field comes from. The route's test compares every listed item with the job
route's answer for the same job, on both stores, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from genai_jobs.domain import JobState, error_code


class Kind(Enum):
    TEXT = "text"  # a string column (never NULL unless the field is optional)
    INTEGER = "integer"
    FRACTION = "fraction"  # a double between 0 and 1, or NULL
    DOCUMENT = "document"  # JSON text stored as such (payload, result)
    TIME = "time"  # a moment: ISO 8601 in UTC, `Z`, microseconds when there are any
    ERROR_CODE = "error_code"  # the seed's `code`, from the status


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the JSON key
    column: str
    kind: Kind


JOB_FIELDS: tuple[Field, ...] = (
    Field("code", "status", Kind.ERROR_CODE),
    Field("created", "created_at", Kind.TIME),
    Field("description", "description", Kind.TEXT),
    Field("message", "message", Kind.TEXT),
    Field("status", "status", Kind.TEXT),
    Field("statusId", "id", Kind.TEXT),
    Field("statusType", "job_type", Kind.TEXT),
    Field("jobType", "job_type", Kind.TEXT),
    Field("tenant", "tenant", Kind.TEXT),
    Field("payload", "payload", Kind.DOCUMENT),
    Field("result", "result", Kind.DOCUMENT),
    Field("resultLocation", "result_location", Kind.TEXT),
    Field("progress", "progress", Kind.FRACTION),
    Field("progressMessage", "progress_message", Kind.TEXT),
    Field("attempts", "attempts", Kind.INTEGER),
    Field("maxAttempts", "max_attempts", Kind.INTEGER),
    Field("priority", "priority", Kind.INTEGER),
    Field("startedAt", "started_at", Kind.TIME),
    Field("finishedAt", "finished_at", Kind.TIME),
    Field("expiresAt", "expires_at", Kind.TIME),
    Field("updatedAt", "updated_at", Kind.TIME),
)

# The states whose `code` is 1 (domain.error_code), for the SQL that writes it.
FAILED_STATES = tuple(state.value for state in JobState if error_code(state))
