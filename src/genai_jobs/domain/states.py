"""The six job states and the only table that says which changes are legal.

Every state change in the system is checked here first; the stores then make
the change as one conditional update on the expected state.
"""

from __future__ import annotations

from enum import StrEnum

from genai_jobs.domain.errors import IllegalTransition


class JobState(StrEnum):
    INITIALIZED = "INITIALIZED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.ERROR, JobState.ABORTED, JobState.EXPIRED}
)

# RUNNING -> INITIALIZED is a retry after a failed attempt, a lease reclaimed
# from a lost worker, or a job released by a worker shutting down.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.INITIALIZED: frozenset({JobState.RUNNING, JobState.ABORTED, JobState.EXPIRED}),
    JobState.RUNNING: frozenset(
        {
            JobState.INITIALIZED,
            JobState.COMPLETED,
            JobState.ERROR,
            JobState.ABORTED,
            JobState.EXPIRED,
        }
    ),
    JobState.COMPLETED: frozenset(),
    JobState.ERROR: frozenset(),
    JobState.ABORTED: frozenset(),
    JobState.EXPIRED: frozenset(),
}

# The states from which a change to the key is legal, for building
# `WHERE status IN (...)` conditions from the same table.
SOURCES: dict[JobState, frozenset[JobState]] = {
    target: frozenset(src for src, targets in TRANSITIONS.items() if target in targets)
    for target in JobState
}


def check_transition(current: JobState, target: JobState) -> None:
    """Raise IllegalTransition unless `current -> target` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current.value, target.value)


def error_code(state: JobState) -> int:
    """The seed's `code`: 1 for a job that failed or missed its deadline, else 0."""
    return 1 if state in (JobState.ERROR, JobState.EXPIRED) else 0
