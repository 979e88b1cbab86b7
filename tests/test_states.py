"""The job state machine: the one table of legal transitions and the `code` rule.

The expected table is written out here by hand, from the API's life cycle,
rather than read back from `TRANSITIONS`: a change to the table must show up
as a failing test, not pass silently.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from genai_jobs.domain import (
    TERMINAL_STATES,
    DomainError,
    IllegalTransition,
    Job,
    JobState,
    check_transition,
    error_code,
)
from genai_jobs.domain.states import SOURCES, TRANSITIONS

INITIALIZED = JobState.INITIALIZED
RUNNING = JobState.RUNNING
COMPLETED = JobState.COMPLETED
ERROR = JobState.ERROR
ABORTED = JobState.ABORTED
EXPIRED = JobState.EXPIRED

LEGAL: frozenset[tuple[JobState, JobState]] = frozenset(
    {
        # A queued job is claimed, aborted at once, or misses its deadline.
        (INITIALIZED, RUNNING),
        (INITIALIZED, ABORTED),
        (INITIALIZED, EXPIRED),
        # A running attempt is retried/reclaimed/released, or ends one way or another.
        (RUNNING, INITIALIZED),
        (RUNNING, COMPLETED),
        (RUNNING, ERROR),
        (RUNNING, ABORTED),
        (RUNNING, EXPIRED),
    }
)
ALL_PAIRS = list(itertools.product(JobState, repeat=2))
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in LEGAL]
TERMINAL = [COMPLETED, ERROR, ABORTED, EXPIRED]


def _pair_id(pair: tuple[JobState, JobState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_six_states_have_the_api_names() -> None:
    assert [state.value for state in JobState] == [
        "INITIALIZED", "RUNNING", "COMPLETED", "ERROR", "ABORTED", "EXPIRED",
    ]
    assert JobState("RUNNING") is RUNNING
    assert str(ABORTED) == "ABORTED"  # a StrEnum: serialises as its name


@pytest.mark.parametrize("pair", sorted(LEGAL), ids=_pair_id)
def test_legal_transitions_pass(pair: tuple[JobState, JobState]) -> None:
    current, target = pair
    check_transition(current, target)  # does not raise
    assert target in TRANSITIONS[current]


@pytest.mark.parametrize("pair", ILLEGAL, ids=_pair_id)
def test_illegal_transitions_raise_with_a_clear_message(pair: tuple[JobState, JobState]) -> None:
    current, target = pair
    with pytest.raises(IllegalTransition) as raised:
        check_transition(current, target)
    assert str(raised.value) == f"a {current.value} job cannot become {target.value}"
    assert (raised.value.current, raised.value.target) == (current.value, target.value)
    assert isinstance(raised.value, DomainError)


def test_every_pair_is_either_legal_or_illegal() -> None:
    assert len(ALL_PAIRS) == 36
    assert len(LEGAL) + len(ILLEGAL) == 36
    # The table has a row for every state, and nothing beyond the legal pairs.
    assert set(TRANSITIONS) == set(JobState)
    assert {(src, dst) for src, targets in TRANSITIONS.items() for dst in targets} == LEGAL


def test_no_state_transitions_to_itself() -> None:
    for state in JobState:
        with pytest.raises(IllegalTransition):
            check_transition(state, state)


def test_terminal_states_are_exactly_the_four_outcomes() -> None:
    assert frozenset(TERMINAL) == TERMINAL_STATES
    assert [state for state in JobState if state.is_terminal] == TERMINAL
    assert not INITIALIZED.is_terminal
    assert not RUNNING.is_terminal


@pytest.mark.parametrize("terminal", TERMINAL, ids=str)
def test_terminal_states_have_no_way_out(terminal: JobState) -> None:
    assert TRANSITIONS[terminal] == frozenset()
    for target in JobState:
        with pytest.raises(IllegalTransition, match=f"^a {terminal.value} job cannot become"):
            check_transition(terminal, target)


def test_sources_are_the_inverse_of_the_table() -> None:
    """Stores build `WHERE status IN (...)` from SOURCES; it must agree with the table."""
    for target in JobState:
        assert {src for src, dst in LEGAL if dst is target} == SOURCES[target], target
    assert SOURCES[INITIALIZED] == {RUNNING}
    assert SOURCES[RUNNING] == {INITIALIZED}
    assert SOURCES[COMPLETED] == {RUNNING}
    assert SOURCES[ABORTED] == {INITIALIZED, RUNNING}


# -- the `code` rule -------------------------------------------------------------

EXPECTED_CODE = {
    INITIALIZED: 0, RUNNING: 0, COMPLETED: 0, ABORTED: 0, ERROR: 1, EXPIRED: 1,
}


def _job(status: JobState) -> Job:
    moment = datetime(2024, 8, 24, 14, 15, 22, tzinfo=UTC)
    return Job(
        id=uuid4(), tenant="acme", job_type="echo", payload={}, description="",
        status=status, message="", result=None, result_location=None, progress=None,
        progress_message="", attempts=1, max_attempts=3, priority=0, created_at=moment,
        updated_at=moment, started_at=None, finished_at=None, expires_at=moment,
        run_after=moment, abort_reason=None,
    )


@pytest.mark.parametrize("state", list(JobState), ids=str)
def test_code_is_one_only_for_error_and_expired(state: JobState) -> None:
    assert error_code(state) == EXPECTED_CODE[state]
    job = _job(state)
    assert job.code == EXPECTED_CODE[state]
    assert job.is_terminal == state.is_terminal


def test_a_job_knows_when_an_abort_was_requested() -> None:
    job = _job(RUNNING)
    assert not job.abort_requested
    flagged = dataclasses.replace(job, abort_reason="by alice")
    assert flagged.abort_requested
