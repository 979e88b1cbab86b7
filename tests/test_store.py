"""The store contract: what every store (SQLite now, PostgreSQL later) must do.

Every test runs on a real store in the test's own directory; nothing is mocked.
Time-dependent behaviour uses short leases and polls the clock with a deadline.
The race tests at the end run store calls from separate processes, each with
its own store instance on the same store, released together by a barrier.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from genai_jobs.domain import (
    IdempotencyConflict,
    IllegalTransition,
    Job,
    JobNotFound,
    JobQuery,
    JobState,
    JobStatus,
    LeaseLost,
    StoreUnavailable,
    TokenNotFound,
)
from genai_jobs.store import Store
from genai_jobs.store.postgres.store import PostgresStore
from tests.store_support import (
    Order,
    Outcome,
    StoreTarget,
    actor_pool,
    claim_one,
    new_job,
    sleep_past,
    submit,
    utcnow,
    wait_until,
)

# A short lease, for tests that let one lapse.
SHORT_LEASE = 0.2
# How long a waiter may take to see a change: generous, the mechanism is what counts.
WAKE_SECONDS = 5.0
# The clock tolerance when comparing a stored time with one taken in the test.
CLOCK_SLACK = timedelta(seconds=5)
# A quiet spell on the change feed: a few of the SQLite watcher's 50 ms polls.
QUIET_SECONDS = 0.2

INITIALIZED = JobState.INITIALIZED
RUNNING = JobState.RUNNING
COMPLETED = JobState.COMPLETED
ERROR = JobState.ERROR
ABORTED = JobState.ABORTED
EXPIRED = JobState.EXPIRED


def near(moment: datetime | None, expected: datetime, slack: timedelta = CLOCK_SLACK) -> bool:
    return moment is not None and abs(moment - expected) <= slack


async def tenant_page(store: Store, tenant: str | None, **query: Any) -> list[Job]:
    return (await store.list_jobs(JobQuery(tenant=tenant, **query))).jobs


# -- life cycle -------------------------------------------------------------------


async def test_migrate_is_idempotent_and_readiness_follows_it(target: StoreTarget) -> None:
    store = await target.open(migrate=False)
    try:
        with pytest.raises(StoreUnavailable):
            await store.check_ready()
        applied = await store.migrate()
        assert applied, "a new store needs its migrations"
        assert applied == sorted(applied)
        await store.check_ready()
        assert await store.migrate() == []
        await store.check_ready()
    finally:
        await store.close()
    reopened = await target.open(migrate=False)
    try:
        await reopened.check_ready()
        assert await reopened.migrate() == []
    finally:
        await reopened.close()


async def test_concurrent_migrations_apply_each_version_once(target: StoreTarget) -> None:
    first, second = target.create(), target.create()
    await first.open()
    await second.open()
    try:
        results = await asyncio.gather(first.migrate(), second.migrate())
        assert sorted(results, key=len)[0] == []
        assert sorted(results, key=len)[1]
        await first.check_ready()
        await second.check_ready()
    finally:
        await first.close()
        await second.close()


async def test_a_committed_job_survives_reopening_the_store(target: StoreTarget) -> None:
    store = await target.open()
    try:
        job = await submit(store, payload={"keep": "me"})
    finally:
        await store.close()
    reopened = await target.open()
    try:
        assert await reopened.get(job.id) == job
    finally:
        await reopened.close()


async def test_a_closed_store_refuses_work_with_store_unavailable(target: StoreTarget) -> None:
    store = await target.open()
    job = await submit(store)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get(job.id)
    with pytest.raises(StoreUnavailable):
        await store.submit(new_job())


@pytest.mark.parametrize("operation", ["get", "list_jobs", "submit", "claim"])
async def test_an_unmigrated_store_raises_store_unavailable(
    target: StoreTarget, operation: str
) -> None:
    calls = {
        "get": lambda store: store.get(uuid4()),
        "list_jobs": lambda store: store.list_jobs(JobQuery(tenant=None)),
        "submit": lambda store: store.submit(new_job()),
        "claim": lambda store: store.claim("w", {"echo"}, 60.0, 1),
    }
    store = await target.open(migrate=False)
    try:
        with pytest.raises(StoreUnavailable):
            await calls[operation](store)
    finally:
        await store.close()


# -- submit, get, list ------------------------------------------------------------------


async def test_submit_commits_a_queued_job(store: Store) -> None:
    deadline = utcnow() + timedelta(hours=2)
    payload = {"prompt": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}}
    new = new_job(payload=payload, description="a test job", priority=7, max_attempts=4,
                  expires_at=deadline)
    outcome = await store.submit(new)
    job = outcome.job
    assert outcome.created
    assert (job.tenant, job.job_type, job.payload, job.description) == (
        "acme", "echo", payload, "a test job")
    assert (job.status, job.code, job.attempts, job.max_attempts, job.priority) == (
        INITIALIZED, 0, 0, 4, 7)
    assert (job.message, job.result, job.result_location, job.progress) == ("", None, None, None)
    assert job.started_at is None
    assert job.finished_at is None
    assert job.lease_id is None
    assert job.abort_reason is None
    assert near(job.created_at, utcnow())
    assert job.created_at.tzinfo is not None
    assert abs(job.expires_at - deadline) < timedelta(milliseconds=1)
    assert job.run_after <= job.created_at + timedelta(milliseconds=1)
    assert await store.get(job.id) == job
    assert await store.get(job.id, "acme") == job


async def test_a_recorded_job_is_completed_from_the_start_and_never_claimed(
        store: Store) -> None:
    new = new_job(job_type="dataset.ingest", payload={"file": "a.zip"}, description="ingest")
    job = await store.record_completed(new, {"rows": 3}, "http://h/api/v2/datasets/x/")
    assert (job.status, job.code, job.attempts, job.progress) == (COMPLETED, 0, 1, 1.0)
    assert (job.result, job.result_location) == ({"rows": 3}, "http://h/api/v2/datasets/x/")
    assert (job.job_type, job.payload, job.description) == (
        "dataset.ingest", {"file": "a.zip"}, "ingest")
    assert job.finished_at is not None
    assert job.started_at is not None
    assert near(job.finished_at, utcnow())
    assert await store.get(job.id, "acme") == job
    assert await store.claim("w", ["dataset.ingest"], 30, 10) == []
    with pytest.raises(IllegalTransition):
        await store.request_abort(job.id, None, "too late")


async def test_get_hides_other_tenants_jobs_like_unknown_ones(store: Store) -> None:
    job = await submit(store, tenant="acme")
    with pytest.raises(JobNotFound) as foreign:
        await store.get(job.id, "globex")
    unknown_id = uuid4()
    with pytest.raises(JobNotFound) as unknown:
        await store.get(unknown_id, "globex")
    assert str(foreign.value) == f"job {job.id} not found"
    assert str(unknown.value) == f"job {unknown_id} not found"
    assert (await store.get(job.id, None)).id == job.id  # admin scope


async def test_list_is_scoped_to_the_tenant_and_the_admin_sees_all(store: Store) -> None:
    acme = {(await submit(store, tenant="acme")).id for _ in range(3)}
    globex = {(await submit(store, tenant="globex")).id for _ in range(2)}
    page = await store.list_jobs(JobQuery(tenant="acme"))
    assert {job.id for job in page.jobs} == acme
    assert page.total_count == 3
    page = await store.list_jobs(JobQuery(tenant="globex"))
    assert {job.id for job in page.jobs} == globex
    assert page.total_count == 2
    page = await store.list_jobs(JobQuery(tenant="initech"))
    assert page.jobs == []
    assert page.total_count == 0
    page = await store.list_jobs(JobQuery(tenant=None))
    assert {job.id for job in page.jobs} == acme | globex
    assert page.total_count == 5


async def test_list_filters_by_status_and_job_type(store: Store) -> None:
    queued = await submit(store, job_type="echo")
    running = await submit(store, job_type="sleep")
    aborted = await submit(store, job_type="echo")
    other_tenant = await submit(store, tenant="globex", job_type="echo")
    await claim_one(store, "sleep")
    await store.request_abort(aborted.id, "acme", "by alice")

    async def ids(**query: Any) -> set[Any]:
        page = await store.list_jobs(JobQuery(tenant="acme", **query))
        assert page.total_count == len(page.jobs)
        return {job.id for job in page.jobs}

    assert await ids(statuses=[INITIALIZED]) == {queued.id}
    assert await ids(statuses=[RUNNING, ABORTED]) == {running.id, aborted.id}
    assert await ids(statuses=[COMPLETED]) == set()
    assert await ids(job_type="echo") == {queued.id, aborted.id}
    assert await ids(job_type="echo", statuses=[ABORTED]) == {aborted.id}
    assert await ids(job_type="nope") == set()
    admin = await store.list_jobs(JobQuery(tenant=None, job_type="echo"))
    assert {job.id for job in admin.jobs} == {queued.id, aborted.id, other_tenant.id}


async def test_list_is_newest_first_with_offset_limit_and_total(store: Store) -> None:
    submitted = [(await submit(store, payload={"i": i})).id for i in range(7)]
    await submit(store, tenant="globex")
    newest_first = list(reversed(submitted))
    seen = []
    for offset in range(0, 9, 3):
        page = await store.list_jobs(JobQuery(tenant="acme", offset=offset, limit=3))
        assert page.total_count == 7
        assert [job.id for job in page.jobs] == newest_first[offset:offset + 3]
        seen += [job.id for job in page.jobs]
    assert seen == newest_first
    beyond = await store.list_jobs(JobQuery(tenant="acme", offset=50, limit=3))
    assert beyond.jobs == []
    assert beyond.total_count == 7
    stamps = [job.created_at for job in await tenant_page(store, "acme")]
    assert stamps == sorted(stamps, reverse=True)


async def test_count_by_state_counts_every_state(store: Store) -> None:
    for _ in range(2):
        await submit(store)
    aborted = await submit(store)
    await store.request_abort(aborted.id, None, "by admin")
    await submit(store, job_type="sleep")
    await claim_one(store, "sleep")
    counts = await store.count_by_state()
    assert counts == {INITIALIZED: 2, RUNNING: 1, ABORTED: 1, COMPLETED: 0, ERROR: 0, EXPIRED: 0}


# -- idempotency keys -------------------------------------------------------------------


async def test_a_reused_key_with_the_same_request_returns_the_same_job(store: Store) -> None:
    first = await store.submit(new_job(key="k-1", request_hash="h1"))
    again = await store.submit(new_job(key="k-1", request_hash="h1"))
    assert first.created
    assert not again.created
    assert again.job == first.job
    assert (await store.list_jobs(JobQuery(tenant="acme"))).total_count == 1


async def test_a_reused_key_with_another_request_conflicts(store: Store) -> None:
    first = await store.submit(new_job(key="k-1", request_hash="h1"))
    with pytest.raises(IdempotencyConflict, match="k-1"):
        await store.submit(new_job(key="k-1", request_hash="h2", payload={"n": 2}))
    page = await store.list_jobs(JobQuery(tenant=None))
    assert [job.id for job in page.jobs] == [first.job.id]


async def test_idempotency_keys_are_per_tenant(store: Store) -> None:
    acme = await store.submit(new_job(tenant="acme", key="k-1", request_hash="h1"))
    globex = await store.submit(new_job(tenant="globex", key="k-1", request_hash="other"))
    assert acme.created
    assert globex.created
    assert acme.job.id != globex.job.id
    assert (await store.get(globex.job.id, "globex")).tenant == "globex"


async def test_concurrent_submissions_with_one_key_make_one_job(
        store: Store, other_instance: Store) -> None:
    """A client that retries while its first request is still in flight: the two race
    from two API processes, and both must answer with the one job."""
    for round_no in range(20):
        key = f"race-{round_no}"
        outcomes = await asyncio.gather(
            *(instance.submit(new_job(key=key, request_hash="h"))
              for instance in (store, other_instance, store, other_instance)))
        assert sum(outcome.created for outcome in outcomes) == 1
        assert len({outcome.job.id for outcome in outcomes}) == 1
    assert (await store.list_jobs(JobQuery(tenant="acme"))).total_count == 20


async def test_submissions_without_a_key_are_never_merged(store: Store) -> None:
    first = await store.submit(new_job())
    second = await store.submit(new_job())
    assert first.created
    assert second.created
    assert first.job.id != second.job.id


# -- claims ---------------------------------------------------------------------------------


async def test_claim_takes_the_highest_priority_then_the_oldest(store: Store) -> None:
    jobs = {name: await submit(store, priority=priority, payload={"name": name})
            for name, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 9)]}
    first = await store.claim("w", {"echo"}, 60.0, 1)
    rest = await store.claim("w", {"echo"}, 60.0, 10)
    order = [lease.job.payload["name"] for lease in [*first, *rest]]
    assert order == ["f", "b", "d", "a", "c", "e"]
    assert {lease.job_id for lease in [*first, *rest]} == {job.id for job in jobs.values()}


async def test_a_claim_starts_an_attempt_under_a_lease(store: Store) -> None:
    job = await submit(store)
    before = utcnow()
    lease = await claim_one(store, lease_seconds=30.0, owner="host-1:42")
    stored = await store.get(job.id)
    assert lease.job == stored
    assert (stored.status, stored.attempts, stored.lease_owner) == (RUNNING, 1, "host-1:42")
    assert stored.lease_id == lease.lease_id
    assert lease.owner == "host-1:42"
    assert stored.lease_expires_at == lease.expires_at
    assert near(lease.expires_at, before + timedelta(seconds=30))
    assert near(stored.started_at, before)
    assert await store.claim("w2", {"echo"}, 30.0, 5) == []  # nobody else gets it


async def test_claim_takes_only_the_job_types_asked_for(store: Store) -> None:
    echo = await submit(store, job_type="echo")
    sleep = await submit(store, job_type="sleep")
    await submit(store, job_type="unregistered")
    assert await store.claim("w", set(), 60.0, 10) == []
    leases = await store.claim("w", {"sleep", "nothing-queued"}, 60.0, 10)
    assert [lease.job_id for lease in leases] == [sleep.id]
    leases = await store.claim("w", ["echo"], 60.0, 10)
    assert [lease.job_id for lease in leases] == [echo.id]
    assert await store.claim("w", {"echo", "sleep"}, 60.0, 10) == []


async def test_claim_takes_at_most_limit_jobs(store: Store) -> None:
    submitted = {(await submit(store)).id for _ in range(5)}
    assert await store.claim("w", {"echo"}, 60.0, 0) == []
    taken = [await store.claim("w", {"echo"}, 60.0, 2) for _ in range(4)]
    assert [len(batch) for batch in taken] == [2, 2, 1, 0]
    assert {lease.job_id for batch in taken for lease in batch} == submitted


async def test_a_claim_that_finds_nothing_commits_nothing(
        store: Store, target: StoreTarget) -> None:
    """An idle worker looks for work after every job: on SQLite a look that takes
    nothing must not cost a write transaction (and its fsync)."""
    if target.kind != "sqlite":
        pytest.skip("SQLite's data_version shows other connections' commits")
    await submit(store, job_type="sleep")  # queued, but of a type not asked for
    watcher = sqlite3.connect(target.location)
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        assert await store.claim("w", {"echo"}, 60.0, 4) == []
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
        assert len(await store.claim("w", {"sleep"}, 60.0, 4)) == 1
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    finally:
        watcher.close()


async def test_claim_skips_a_job_waiting_to_be_retried(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    retry_at = utcnow() + timedelta(hours=1)
    await store.fail_attempt(lease, "boom; retrying later", retry_at)
    assert await store.claim("w", {"echo"}, 60.0, 5) == []
    waiting = await store.get(job.id)
    assert waiting.status is INITIALIZED
    assert abs(waiting.run_after - retry_at) < timedelta(milliseconds=1)


async def test_claim_skips_a_job_past_its_deadline(store: Store) -> None:
    job = await submit(store, expires_at=utcnow() - timedelta(seconds=1))
    assert await store.claim("w", {"echo"}, 60.0, 5) == []
    assert (await store.get(job.id)).status is INITIALIZED  # expire_overdue's to end


async def test_claim_skips_a_job_whose_deadline_passed_while_queued(store: Store) -> None:
    deadline = utcnow() + timedelta(seconds=0.3)
    await submit(store, expires_at=deadline)
    await sleep_past(deadline)
    assert await store.claim("w", {"echo"}, 60.0, 5) == []


# -- leases -----------------------------------------------------------------------------------


async def test_heartbeat_extends_the_lease_past_its_first_expiry(store: Store) -> None:
    await submit(store)
    lease = await claim_one(store, lease_seconds=SHORT_LEASE * 2)
    renewed = await store.heartbeat(lease, 60.0)
    assert renewed.status is RUNNING
    assert renewed.lease_id == lease.lease_id
    assert renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > lease.expires_at + timedelta(seconds=50)
    await sleep_past(lease.expires_at)
    assert (await store.heartbeat(lease, 60.0)).lease_id == lease.lease_id
    assert (await store.complete(lease, {"ok": True}, None)).status is COMPLETED


async def test_heartbeat_with_a_wrong_lease_is_refused(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    before = await store.get(job.id)
    impostor = dataclasses.replace(lease, lease_id=uuid4())
    with pytest.raises(LeaseLost, match=str(job.id)):
        await store.heartbeat(impostor, 60.0)
    with pytest.raises(LeaseLost):
        await store.report_progress(impostor, 0.5, "not mine")
    with pytest.raises(LeaseLost):
        await store.complete(impostor, "stolen", None)
    with pytest.raises(LeaseLost):
        await store.finish(impostor, ABORTED, "not mine")
    with pytest.raises(LeaseLost):
        await store.release(impostor, "not mine")
    assert await store.get(job.id) == before


async def test_a_lapsed_lease_can_neither_renew_report_nor_complete(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store, lease_seconds=SHORT_LEASE)
    await sleep_past(lease.expires_at)
    before = await store.get(job.id)
    with pytest.raises(LeaseLost):
        await store.heartbeat(lease, 60.0)
    with pytest.raises(LeaseLost):
        await store.report_progress(lease, 0.9, "too late")
    with pytest.raises(LeaseLost):
        await store.complete(lease, {"late": True}, None)
    with pytest.raises(LeaseLost):
        await store.fail_attempt(lease, "too late", None)
    assert await store.get(job.id) == before
    assert before.status is RUNNING
    assert before.result is None


async def test_a_reclaimed_lease_can_no_longer_end_the_job(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store, lease_seconds=SHORT_LEASE)
    await sleep_past(lease.expires_at)
    [reclaimed] = await store.reclaim_lapsed(utcnow(), 0.0)
    assert reclaimed.id == job.id
    assert reclaimed.status is INITIALIZED
    for end in (
        store.complete(lease, 1, None),
        store.fail_attempt(lease, "x", None),
        store.finish(lease, ABORTED, "x"),
        store.finish(lease, EXPIRED, "x"),
        store.release(lease, "x"),
    ):
        with pytest.raises(LeaseLost):
            await end
    # ... nor the job's next attempt.
    second = await claim_one(store, owner="worker-2")
    with pytest.raises(LeaseLost):
        await store.complete(lease, "first worker", None)
    done = await store.complete(second, "second worker", None)
    assert (done.status, done.result, done.attempts) == (COMPLETED, "second worker", 2)


async def test_report_progress_is_stored(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    await store.report_progress(lease, 0.25, "a quarter")
    stored = await store.get(job.id)
    assert (stored.progress, stored.progress_message) == (0.25, "a quarter")
    await store.report_progress(lease, None, "still a quarter")
    stored = await store.get(job.id)
    assert (stored.progress, stored.progress_message) == (0.25, "still a quarter")
    assert stored.status is RUNNING


# -- ends of attempts --------------------------------------------------------------------


async def test_complete_records_the_result(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    done = await store.complete(lease, {"answer": [42]}, "https://example.test/r/1")
    assert (done.status, done.code, done.result, done.result_location, done.progress) == (
        COMPLETED, 0, {"answer": [42]}, "https://example.test/r/1", 1.0)
    assert near(done.finished_at, utcnow())
    assert done.lease_id is None
    assert done.lease_expires_at is None
    assert await store.get(job.id) == done
    with pytest.raises(LeaseLost):
        await store.complete(lease, "twice", None)
    assert await store.get(job.id) == done


async def test_a_failed_attempt_with_a_retry_time_is_queued_again(store: Store) -> None:
    job = await submit(store, max_attempts=3)
    lease = await claim_one(store)
    retry_at = utcnow() + timedelta(milliseconds=200)
    queued = await store.fail_attempt(lease, "ValueError: flaky (attempt 1 of 3)", retry_at)
    assert (queued.status, queued.attempts, queued.message) == (
        INITIALIZED, 1, "ValueError: flaky (attempt 1 of 3)")
    assert abs(queued.run_after - retry_at) < timedelta(milliseconds=1)
    assert queued.lease_id is None
    assert queued.finished_at is None
    await sleep_past(retry_at)
    again = await claim_one(store)
    assert again.job_id == job.id
    assert again.job.attempts == 2
    assert again.lease_id != lease.lease_id


async def test_a_failed_attempt_without_a_retry_time_is_an_error(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    failed = await store.fail_attempt(lease, "PermanentError: bad input", None)
    assert (failed.status, failed.code, failed.message) == (ERROR, 1, "PermanentError: bad input")
    assert failed.finished_at is not None
    assert failed.lease_id is None
    assert await store.get(job.id) == failed
    assert await store.claim("w", {"echo"}, 60.0, 5) == []


@pytest.mark.parametrize(("state", "code"), [(ABORTED, 0), (EXPIRED, 1)], ids=str)
async def test_finish_ends_an_attempt_as_aborted_or_expired(
    store: Store, state: JobState, code: int
) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    ended = await store.finish(lease, state, "its handler stopped")
    assert (ended.status, ended.code, ended.message) == (state, code, "its handler stopped")
    assert ended.finished_at is not None
    assert ended.lease_id is None
    assert await store.get(job.id) == ended


@pytest.mark.parametrize("state", [COMPLETED, ERROR, INITIALIZED, RUNNING], ids=str)
async def test_finish_refuses_other_states(store: Store, state: JobState) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    with pytest.raises(ValueError, match="ABORTED or EXPIRED"):
        await store.finish(lease, state, "no")
    assert (await store.get(job.id)).status is RUNNING


async def test_release_gives_the_job_back_without_counting_the_attempt(store: Store) -> None:
    job = await submit(store, max_attempts=1)
    lease = await claim_one(store)
    released = await store.release(lease, "released by a worker that shut down")
    assert (released.status, released.attempts, released.message) == (
        INITIALIZED, 0, "released by a worker that shut down")
    assert released.lease_id is None
    assert released.finished_at is None
    again = await claim_one(store, owner="worker-2")
    assert again.job_id == job.id
    assert again.job.attempts == 1


async def test_completing_after_the_deadline_records_expired(store: Store) -> None:
    deadline = utcnow() + timedelta(seconds=0.3)
    job = await submit(store, expires_at=deadline)
    lease = await claim_one(store)
    await sleep_past(deadline)
    ended = await store.complete(lease, {"too": "late"}, None)
    assert (ended.status, ended.code, ended.result) == (EXPIRED, 1, None)
    assert "deadline" in ended.message
    assert await store.get(job.id) == ended


async def test_failing_after_the_deadline_records_expired_not_a_retry(store: Store) -> None:
    deadline = utcnow() + timedelta(seconds=0.3)
    await submit(store, expires_at=deadline)
    lease = await claim_one(store)
    await sleep_past(deadline)
    ended = await store.fail_attempt(lease, "boom", utcnow())
    assert ended.status is EXPIRED


# -- aborts -------------------------------------------------------------------------------


async def test_aborting_a_queued_job_aborts_it_at_once(store: Store) -> None:
    job = await submit(store)
    aborted = await store.request_abort(job.id, "acme", "by alice")
    assert (aborted.status, aborted.code) == (ABORTED, 0)
    assert "by alice" in aborted.message
    assert aborted.finished_at is not None
    assert await store.get(job.id) == aborted
    assert await store.claim("w", {"echo"}, 60.0, 5) == []


async def test_aborting_a_running_job_flags_it_for_its_worker(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    flagged = await store.request_abort(job.id, "acme", "by alice")
    assert (flagged.status, flagged.abort_reason, flagged.abort_requested) == (
        RUNNING, "by alice", True)
    assert "by alice" in flagged.message
    assert flagged.lease_id == lease.lease_id
    assert flagged.finished_at is None
    again = await store.request_abort(job.id, None, "by admin")
    assert (again.status, again.abort_reason) == (RUNNING, "by alice")  # the first reason stays
    seen_by_worker = await store.heartbeat(lease, 60.0)
    assert seen_by_worker.abort_requested
    ended = await store.finish(lease, ABORTED, "aborted by alice; its handler stopped")
    assert ended.status is ABORTED


async def test_aborting_an_aborted_job_is_a_no_op(store: Store) -> None:
    job = await submit(store)
    aborted = await store.request_abort(job.id, "acme", "by alice")
    assert await store.request_abort(job.id, "acme", "by bob") == aborted
    assert await store.get(job.id) == aborted


async def _job_in(store: Store, state: JobState) -> Job:
    job = await submit(store, expires_at=utcnow() + timedelta(hours=1))
    lease = await claim_one(store)
    if state is COMPLETED:
        return await store.complete(lease, "done", None)
    if state is ERROR:
        return await store.fail_attempt(lease, "boom", None)
    [expired] = await store.expire_overdue(utcnow() + timedelta(hours=2), 0.0)
    assert expired.id == job.id
    return expired


@pytest.mark.parametrize("state", [COMPLETED, ERROR, EXPIRED], ids=str)
async def test_aborting_a_finished_job_is_illegal_and_changes_nothing(
    store: Store, state: JobState
) -> None:
    job = await _job_in(store, state)
    assert job.status is state
    with pytest.raises(IllegalTransition, match=f"^a {state.value} job cannot become ABORTED$"):
        await store.request_abort(job.id, "acme", "by alice")
    assert await store.get(job.id) == job


async def test_another_tenant_cannot_abort_a_job(store: Store) -> None:
    job = await submit(store, tenant="acme")
    with pytest.raises(JobNotFound):
        await store.request_abort(job.id, "globex", "by mallory")
    with pytest.raises(JobNotFound):
        await store.request_abort(uuid4(), "globex", "by mallory")
    assert await store.get(job.id) == job
    assert (await store.request_abort(job.id, None, "by admin")).status is ABORTED


@pytest.mark.parametrize("end", ["fail_attempt", "release"])
async def test_an_attempt_ending_after_an_abort_request_does_not_requeue_the_job(
    store: Store, end: str
) -> None:
    job = await submit(store, max_attempts=3)
    lease = await claim_one(store)
    await store.request_abort(job.id, "acme", "by alice")
    if end == "fail_attempt":
        ended = await store.fail_attempt(lease, "boom; retrying", utcnow())
    else:
        ended = await store.release(lease, "released by a worker that shut down")
    assert await store.claim("w", {"echo"}, 60.0, 5) == [], "an aborted job ran again"
    assert ended.status is ABORTED


# -- maintenance ---------------------------------------------------------------------------


async def test_expire_overdue_expires_queued_jobs_at_their_deadline(store: Store) -> None:
    deadline = utcnow() + timedelta(hours=1)
    job = await submit(store, expires_at=deadline)
    later = await submit(store, expires_at=deadline + timedelta(hours=1))
    assert await store.expire_overdue(deadline - timedelta(seconds=1), 60.0) == []
    [expired] = await store.expire_overdue(deadline, 60.0)
    assert (expired.id, expired.status, expired.code) == (job.id, EXPIRED, 1)
    assert "deadline" in expired.message
    assert expired.finished_at is not None
    assert await store.get(job.id) == expired
    assert (await store.get(later.id)).status is INITIALIZED
    assert await store.expire_overdue(deadline, 60.0) == []


async def test_expire_overdue_gives_a_running_job_its_grace(store: Store) -> None:
    deadline = utcnow() + timedelta(hours=1)
    job = await submit(store, expires_at=deadline)
    lease = await claim_one(store)
    assert await store.expire_overdue(deadline + timedelta(seconds=29), 30.0) == []
    assert (await store.get(job.id)).status is RUNNING
    [expired] = await store.expire_overdue(deadline + timedelta(seconds=30), 30.0)
    assert (expired.id, expired.status, expired.lease_id) == (job.id, EXPIRED, None)
    with pytest.raises(LeaseLost):
        await store.complete(lease, "too late", None)
    assert await store.get(job.id) == expired


async def test_expire_overdue_leaves_finished_jobs_alone(store: Store) -> None:
    done = await _job_in(store, COMPLETED)
    failed = await _job_in(store, ERROR)
    assert await store.expire_overdue(utcnow() + timedelta(days=1), 0.0) == []
    assert await store.get(done.id) == done
    assert await store.get(failed.id) == failed


async def test_reclaim_lapsed_retries_while_attempts_remain(store: Store) -> None:
    job = await submit(store, max_attempts=2)
    lease = await claim_one(store, lease_seconds=SHORT_LEASE)
    assert await store.reclaim_lapsed(utcnow(), 30.0) == []  # still live
    await sleep_past(lease.expires_at)
    [retried] = await store.reclaim_lapsed(utcnow(), 30.0)
    assert (retried.id, retried.status, retried.attempts, retried.lease_id) == (
        job.id, INITIALIZED, 1, None)
    assert "worker lost" in retried.message
    assert "attempt 1 of 2" in retried.message
    assert near(retried.run_after, utcnow() + timedelta(seconds=30))
    assert await store.claim("w", {"echo"}, 60.0, 5) == []  # waits out the retry delay


async def test_reclaim_lapsed_fails_the_job_when_attempts_are_spent(store: Store) -> None:
    job = await submit(store, max_attempts=2)
    for attempt in (1, 2):
        lease = await claim_one(store, lease_seconds=60.0)
        assert lease.job.attempts == attempt
        [reclaimed] = await store.reclaim_lapsed(utcnow() + timedelta(minutes=5), 0.0)
    assert (reclaimed.id, reclaimed.status, reclaimed.code) == (job.id, ERROR, 1)
    assert reclaimed.message.startswith("worker lost")
    assert "attempt 2 of 2" in reclaimed.message
    assert reclaimed.finished_at is not None
    assert reclaimed.lease_id is None


async def test_reclaim_lapsed_aborts_a_job_whose_abort_was_requested(store: Store) -> None:
    job = await submit(store, max_attempts=5)
    await claim_one(store, lease_seconds=60.0)
    await store.request_abort(job.id, "acme", "by alice")
    [reclaimed] = await store.reclaim_lapsed(utcnow() + timedelta(minutes=5), 0.0)
    assert (reclaimed.id, reclaimed.status, reclaimed.code) == (job.id, ABORTED, 0)
    assert "by alice" in reclaimed.message
    assert await store.claim("w", {"echo"}, 60.0, 5) == []


async def test_purge_deletes_only_old_terminal_jobs(store: Store) -> None:
    finished = [await _job_in(store, state) for state in (COMPLETED, ERROR, EXPIRED)]
    aborted = await store.request_abort((await submit(store)).id, None, "by admin")
    queued = await submit(store)
    running_job = await submit(store, job_type="sleep")
    await claim_one(store, "sleep")
    retried = await submit(store, job_type="flaky")
    await store.fail_attempt(await claim_one(store, "flaky"), "boom", utcnow() + timedelta(hours=1))

    assert await store.purge(utcnow() - timedelta(hours=1)) == 0
    assert await store.purge(utcnow() + timedelta(hours=1)) == 4
    for job in [*finished, aborted]:
        with pytest.raises(JobNotFound):
            await store.get(job.id)
    for job in (queued, running_job, retried):
        assert (await store.get(job.id)).id == job.id
    assert await store.purge(utcnow() + timedelta(days=1)) == 0


async def test_purge_deletes_more_than_one_batch(
    store: Store, target: StoreTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    if target.kind != "sqlite":
        pytest.skip("shrinks the SQLite store's batch size")
    from genai_jobs.store.sqlite import store as sqlite_store

    monkeypatch.setattr(sqlite_store, "PURGE_BATCH", 2)
    for _ in range(5):
        await store.request_abort((await submit(store)).id, None, "by admin")
    keep = await submit(store)
    assert await store.purge(utcnow() + timedelta(hours=1)) == 5
    page = await store.list_jobs(JobQuery(tenant=None))
    assert [job.id for job in page.jobs] == [keep.id]


# -- tokens ------------------------------------------------------------------------------------


async def test_tokens_are_created_found_touched_and_listed(store: Store) -> None:
    assert await store.count_tokens() == 0
    assert await store.list_tokens() == []
    admin = await store.create_token("ops", True, "hash-admin")
    user = await store.create_token("acme", False, "hash-user")
    assert (admin.tenant, admin.is_admin, user.tenant, user.is_admin) == (
        "ops", True, "acme", False)
    assert admin.revoked_at is None
    assert admin.last_used_at is None
    assert near(admin.created_at, utcnow())
    assert await store.find_token("hash-user") == user
    assert await store.find_token("hash-unknown") is None
    used = utcnow()
    await store.touch_token(user.id, used)
    touched = await store.find_token("hash-user")
    assert touched is not None
    assert near(touched.last_used_at, used, timedelta(milliseconds=1))
    assert [token.id for token in await store.list_tokens()] == [admin.id, user.id]
    assert await store.count_tokens() == 2


async def test_a_revoked_token_is_no_longer_found(store: Store) -> None:
    token = await store.create_token("acme", False, "hash-1")
    revoked = await store.revoke_token(token.id)
    assert revoked.id == token.id
    assert near(revoked.revoked_at, utcnow())
    assert await store.find_token("hash-1") is None
    again = await store.revoke_token(token.id)
    assert again.revoked_at == revoked.revoked_at  # the first revocation time stays
    [listed] = await store.list_tokens()
    assert listed.revoked_at == revoked.revoked_at
    with pytest.raises(TokenNotFound):
        await store.revoke_token(uuid4())


async def test_token_and_job_are_read_together_as_the_token_may_see_them(store: Store) -> None:
    admin = await store.create_token("ops", True, "hash-admin")
    user = await store.create_token("acme", False, "hash-user")
    revoked = await store.create_token("acme", False, "hash-revoked")
    await store.revoke_token(revoked.id)
    own = await submit(store, tenant="acme")
    other = await submit(store, tenant="globex")
    assert await store.find_token_and_status("hash-user", own.id) == (user, JobStatus.of(own))
    assert await store.find_token_and_status("hash-user", other.id) == (user, None)
    assert await store.find_token_and_status("hash-user", uuid4()) == (user, None)
    assert await store.find_token_and_status("hash-admin", other.id) == (admin,
                                                                          JobStatus.of(other))
    assert await store.find_token_and_status("hash-revoked", own.id) == (None, None)
    assert await store.find_token_and_status("hash-unknown", own.id) == (None, None)


async def test_concurrent_token_and_job_reads_each_get_their_own_answer(store: Store) -> None:
    """PostgreSQL answers concurrent polls' lookups in one query (store/gathered.py):
    each must still get the answer to its own question, and a revocation is seen by
    every lookup that starts after it."""
    admin = await store.create_token("ops", True, "hash-admin")
    user = await store.create_token("acme", False, "hash-user")
    own = await submit(store, tenant="acme")
    other = await submit(store, tenant="globex")
    asked = [("hash-user", own.id), ("hash-unknown", own.id), ("hash-user", other.id),
             ("hash-admin", other.id), ("hash-user", uuid4()), ("hash-admin", own.id)]
    expected = [(user, JobStatus.of(own)), (None, None), (user, None),
                (admin, JobStatus.of(other)), (user, None), (admin, JobStatus.of(own))]
    rounds = 40
    answers = await asyncio.gather(*(store.find_token_and_status(secret, job_id)
                                     for _ in range(rounds) for secret, job_id in asked))
    assert answers == expected * rounds

    await store.revoke_token(user.id)
    answers = await asyncio.gather(*(store.find_token_and_status("hash-user", own.id)
                                     for _ in range(rounds)))
    assert answers == [(None, None)] * rounds


async def test_a_poll_that_leaves_does_not_disturb_the_others_lookups(store: Store) -> None:
    user = await store.create_token("acme", False, "hash-user")
    own = await submit(store, tenant="acme")
    lookups = [asyncio.ensure_future(store.find_token_and_status("hash-user", own.id))
               for _ in range(20)]
    await asyncio.sleep(0)  # every lookup asked (on PostgreSQL: waiting for one query)
    for leaving in lookups[::3]:
        leaving.cancel()
    done = await asyncio.gather(*lookups, return_exceptions=True)
    left = 0
    for index, outcome in enumerate(done):
        if index % 3 == 0 and isinstance(outcome, asyncio.CancelledError):
            left += 1
        else:  # answered (SQLite's lookup may be done before its caller leaves)
            assert outcome == (user, JobStatus.of(own))
    if isinstance(store, PostgresStore):  # they left while their query ran
        assert left == len(lookups[::3])
    assert await store.find_token_and_status("hash-user", own.id) == (user, JobStatus.of(own))


# -- the change feed ------------------------------------------------------------------------


async def _quiet(store: Store, job_id: Any = None) -> None:
    """Wait until no notification (for `job_id`, else for work) came for QUIET_SECONDS.

    A store may deliver a change more than once (SQLite's watcher echoes this
    process's own commits a poll later); consumers re-read, so that is allowed.
    A waiter started after this is woken only by what the test does next.
    """
    for _ in range(50):
        if job_id is None:
            woken = await store.changes.wait_for_work(QUIET_SECONDS)
        else:
            woken = await store.changes.wait_for_job(job_id, QUIET_SECONDS)
        if not woken:
            return
    raise AssertionError(f"the change feed never went quiet for {job_id or 'work'}")


async def _start_job_waiter(store: Store, job_id: Any) -> asyncio.Task[bool]:
    """A long-poll style waiter on `job_id`, registered before this returns."""
    await _quiet(store, job_id)
    before = store.changes.job_waiter_count
    waiter = asyncio.create_task(store.changes.wait_for_job(job_id, WAKE_SECONDS))
    await wait_until(lambda: waiter.done() or store.changes.job_waiter_count > before, 1.0,
                     "the waiter to register")
    assert not waiter.done(), "woken before anything happened"
    return waiter


async def _start_work_waiter(store: Store) -> asyncio.Task[bool]:
    await _quiet(store)
    waiter = asyncio.create_task(store.changes.wait_for_work(WAKE_SECONDS))
    # The coroutine subscribes before it first suspends; one turn of the loop runs it there.
    await asyncio.sleep(0)
    assert not waiter.done(), "woken before anything happened"
    return waiter


async def _woken_within(waiter: asyncio.Task[bool]) -> float:
    started = time.monotonic()
    assert await waiter, "the waiter timed out instead of being woken"
    return time.monotonic() - started


async def test_a_waiter_sleeps_until_its_job_changes(store: Store) -> None:
    job = await submit(store)
    other = await submit(store)
    await _quiet(store, job.id)
    assert await store.changes.wait_for_job(job.id, 0.2) is False  # nothing happened
    waiter = await _start_job_waiter(store, job.id)
    await store.request_abort(other.id, None, "by admin")  # another job's change
    await asyncio.sleep(QUIET_SECONDS)  # the other change and any echo of it are delivered
    assert not waiter.done(), "a change of another job woke this job's waiter"
    await store.request_abort(job.id, None, "by admin")
    assert await _woken_within(waiter) < 1.0
    assert store.changes.job_waiter_count == 0


async def test_a_worker_update_wakes_the_jobs_waiters(store: Store) -> None:
    job = await submit(store)
    lease = await claim_one(store)
    waiter = await _start_job_waiter(store, job.id)
    await store.report_progress(lease, 0.5, "half")
    assert await _woken_within(waiter) < 1.0
    waiter = await _start_job_waiter(store, job.id)
    await store.complete(lease, "done", None)
    assert await _woken_within(waiter) < 1.0


async def test_a_change_by_another_instance_wakes_waiters(
    store: Store, other_instance: Store
) -> None:
    job = await submit(store)
    waiter = await _start_job_waiter(store, job.id)
    [lease] = await other_instance.claim("elsewhere", {"echo"}, 60.0, 1)
    assert await _woken_within(waiter) < 2.0
    waiter = await _start_job_waiter(store, job.id)
    await other_instance.report_progress(lease, 0.5, "half")
    assert await _woken_within(waiter) < 2.0
    waiter = await _start_job_waiter(store, job.id)
    await other_instance.complete(lease, "done elsewhere", None)
    assert await _woken_within(waiter) < 2.0
    assert (await store.get(job.id)).result == "done elsewhere"


async def test_a_change_by_this_store_wakes_waiters_on_the_other_instance(
    store: Store, other_instance: Store
) -> None:
    job = await submit(store)
    waiter = await _start_job_waiter(other_instance, job.id)
    await store.request_abort(job.id, None, "by admin")
    assert await _woken_within(waiter) < 2.0


async def test_a_submit_wakes_idle_workers_here_and_on_the_other_instance(
    store: Store, other_instance: Store
) -> None:
    assert await store.changes.wait_for_work(0.2) is False  # nothing happened
    here = await _start_work_waiter(store)
    there = await _start_work_waiter(other_instance)
    await submit(store)
    assert await _woken_within(here) < 1.0
    assert await _woken_within(there) < 2.0
    here = await _start_work_waiter(store)
    await submit(other_instance)
    assert await _woken_within(here) < 2.0


async def test_a_retry_wakes_idle_workers_on_the_other_instance(
    store: Store, other_instance: Store
) -> None:
    await submit(store)
    lease = await claim_one(store)
    waiter = await _start_work_waiter(other_instance)
    await store.fail_attempt(lease, "boom; retrying", utcnow())
    assert await _woken_within(waiter) < 2.0
    assert len(await other_instance.claim("elsewhere", {"echo"}, 60.0, 1)) == 1


# -- races between processes ------------------------------------------------------------------

RACE_ROUNDS = 30
RACE_RESULT = {"winner": "the worker"}
ABORT_REASON = "by the race"


async def _fire_again(store: Store, final: Job, lease: Any) -> None:
    """The three racers again, one after the other: every one must now lose."""
    with pytest.raises(LeaseLost):
        await store.complete(lease, "again", None)
    with pytest.raises(IllegalTransition):
        await store.request_abort(final.id, None, "again")
    assert await store.expire_overdue(utcnow() + timedelta(days=1), 0.0) == []
    assert await store.get(final.id) == final


def _check_race(final: Job, outcomes: dict[str, Outcome]) -> str:
    """Exactly one of the finisher and the deadline won; the loser and the abort
    request saw that, and the stored job is the winner's, field for field."""
    complete, abort, expire = outcomes["complete"], outcomes["abort"], outcomes["expire"]
    assert expire.ok, expire
    completed = complete.ok
    expired = [job for job in expire.value if job.id == final.id]
    assert completed != bool(expired), (outcomes, final)
    if completed:
        assert final == complete.value
        assert (final.status, final.result) == (COMPLETED, RACE_RESULT)
        assert expire.value == []
    else:
        assert final == expired[0]
        assert (final.status, final.result) == (EXPIRED, None)
        assert complete.error_type == "LeaseLost", complete
    assert final.lease_id is None
    assert final.finished_at is not None
    if abort.ok:  # it came first: a flag for the worker, kept by the winner
        assert (abort.value.status, abort.value.abort_reason) == (RUNNING, ABORT_REASON)
        assert final.abort_reason == ABORT_REASON
        return f"{final.status.value}, abort flagged first"
    assert abort.error_type == "IllegalTransition", abort
    assert abort.error_message == f"a {final.status.value} job cannot become ABORTED"
    assert final.abort_reason is None
    return f"{final.status.value}, abort too late"


@pytest.mark.slow
async def test_finish_abort_and_deadline_race_has_exactly_one_winner(
    store: Store, target: StoreTarget
) -> None:
    """Guarantee 2: a worker completing, a user aborting and the maintenance sweep
    expiring the same RUNNING job, from three processes at once."""
    rng = random.Random(20240824)
    finals: list[Job] = []
    tally: dict[str, int] = {}
    with actor_pool(target, ["complete", "abort", "expire"]) as pool:
        for round_number in range(RACE_ROUNDS):
            job = await submit(store, payload={"round": round_number})
            lease = await claim_one(store, lease_seconds=60.0)
            # The sweep's clock is past the deadline; the worker's is not.
            sweep_time = job.expires_at + timedelta(seconds=1)
            jitter = [0.0, 0.0, 0.0, 0.001, 0.003]
            orders = {
                "complete": Order("complete", (lease, RACE_RESULT, None), rng.choice(jitter)),
                "abort": Order("abort", (job.id, "acme", ABORT_REASON), rng.choice(jitter)),
                "expire": Order("expire", (sweep_time, 0.0), rng.choice(jitter)),
            }
            outcomes = await asyncio.to_thread(pool.run_round, orders)
            final = await store.get(job.id)
            kind = _check_race(final, outcomes)
            tally[kind] = tally.get(kind, 0) + 1
            await _fire_again(store, final, lease)
            finals.append(final)
    for final in finals:  # later rounds' sweeps changed no earlier outcome
        assert await store.get(final.id) == final
    print(f"race outcomes over {RACE_ROUNDS} rounds: {tally}")


CLAIMERS = 4
CLAIM_JOBS = 200
CLAIM_ROUNDS = 2


@pytest.mark.slow
async def test_concurrent_claimers_take_every_job_exactly_once(
    store: Store, target: StoreTarget
) -> None:
    """Guarantee 3: claimers in separate processes never share a job, and leave none."""
    names = [f"claimer-{n}" for n in range(CLAIMERS)]
    with actor_pool(target, names) as pool:
        for round_number in range(CLAIM_ROUNDS):
            job_type = f"race-{round_number}"
            submitted = set()
            for n in range(CLAIM_JOBS):
                submitted.add((await submit(store, job_type=job_type, priority=n % 3)).id)
            orders = {name: Order("drain", (job_type, round_number * 100 + i))
                      for i, name in enumerate(names)}
            outcomes = await asyncio.to_thread(pool.run_round, orders)
            taken_by: dict[Any, str] = {}
            for name, outcome in outcomes.items():
                assert outcome.ok, (name, outcome)
                for job_id, _lease_id in outcome.value:
                    assert job_id not in taken_by, f"{job_id}: {taken_by[job_id]} and {name}"
                    taken_by[job_id] = name
            assert set(taken_by) == submitted
            page = await store.list_jobs(JobQuery(tenant=None, job_type=job_type, limit=1000))
            assert page.total_count == CLAIM_JOBS
            for job in page.jobs:
                assert (job.status, job.attempts) == (COMPLETED, 1), job
                assert job.result == {"by": taken_by[job.id]}
            shares = sorted(sum(1 for who in taken_by.values() if who == name) for name in names)
            print(f"round {round_number}: jobs per claimer {shares}")


# -- concurrency within one process -------------------------------------------------------------


async def test_concurrent_writes_are_each_atomic_and_independent(store: Store) -> None:
    """Many writes in flight at once (the SQLite store commits them together): each one
    that fails leaves no trace, and none of the others is lost with it."""
    jobs = await asyncio.gather(*(submit(store, description=f"job {n}") for n in range(60)))
    leases = await store.claim("worker-1", {"echo"}, 60.0, 60)
    assert len(leases) == 60
    wrong = dataclasses.replace(leases[0], lease_id=uuid4())
    outcomes = await asyncio.gather(
        store.complete(wrong, "not mine", None),
        *(store.complete(lease, {"n": n}, None) for n, lease in enumerate(leases[1:])),
        store.request_abort(leases[0].job_id, None, "by admin"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], LeaseLost)
    assert all(isinstance(outcome, Job) for outcome in outcomes[1:])
    first = await store.get(leases[0].job_id)
    assert first.status is RUNNING
    assert first.abort_requested
    assert first.result is None
    done = await store.list_jobs(JobQuery(tenant=None, statuses=[COMPLETED], limit=100))
    assert done.total_count == 59
    assert {job.id for job in jobs} == {lease.job_id for lease in leases}
