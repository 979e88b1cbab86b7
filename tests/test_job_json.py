"""A page of jobs as the database writes it (list_jobs_json) is, item for item, what
the job route writes for each job (job_body), on both stores: every state, payloads
and results of every JSON kind, progress, and instants that need rounding."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest

from genai_jobs.api.schemas import job_body
from genai_jobs.domain import JobQuery, JobState
from genai_jobs.store import Store
from tests.store_support import StoreTarget, claim_one, submit

# Payloads and results that JSON writers tend to disagree on.
ODD_DOCUMENTS: list[dict[str, Any]] = [
    {},
    {"text": "naïve café ☕ 日本語 \U0001f600", "quote": 'say "hi" \\ back/slash'},
    {"controls": "tab\there\nnewline\rcr\x1bescape\x00nul\x7fdel"},
    {"big": 2**63 - 1, "small": -(2**63), "zero": 0, "negative": -17},
    {"floats": [0.1, 1.5e-10, 1e300, -2.5, 1.0, 0.0, 123456789.123456789]},
    {"nested": {"a": [1, [2, [3, {"b": None}]], {}], "t": True, "f": False}, "empty": []},
    {"z": 1, "a": 2, "m": {"y": 1, "b": 2}},  # the order keys were written in
]
# Progress as handlers round it (six decimals), including the ends.
PROGRESS = [0.0, 1.0, round(1 / 3, 6), 0.1, 0.5, round(2 / 3, 6), 1e-06, 0.999999]
# SQLite epoch seconds whose microseconds round half to even (7812.5 -> 7812,
# 23437.5 -> 23438), carry into the next second, or are none at all.
EPOCHS = [1_700_000_000.0078125, 1_700_000_000.0234375, 1_700_000_000.9999996,
          1_700_000_000.0, 1_700_000_000.5, 1_234_567_890.123456]


async def expected_items(store: Store, query: JobQuery) -> list[Any]:
    return [orjson.loads(job_body(await store.get(job.id)))
            for job in (await store.list_jobs(query)).jobs]


async def assert_pages_agree(store: Store, query: JobQuery) -> list[Any]:
    page = await store.list_jobs_json(query)
    items: list[Any] = orjson.loads(page.data)
    expected = await expected_items(store, query)
    assert len(items) == len(expected)
    for item, wanted in zip(items, expected, strict=True):
        assert {key: (item.get(key), value) for key, value in wanted.items()
                if item.get(key) != value} == {}
        assert list(item) == list(wanted)  # the fields, in JobResponse's order
    records = await store.list_jobs(query)
    assert page.count == len(items) == len(records.jobs)
    assert page.total_count == records.total_count
    return items


async def make_every_kind_of_job(store: Store) -> None:
    for index, document in enumerate(ODD_DOCUMENTS):
        await submit(store, payload=document, description=f"odd {index}: ünïcode \n line")
    for index, document in enumerate(ODD_DOCUMENTS):
        await submit(store, job_type="done", payload={"i": index})
        lease = await claim_one(store, "done")
        await store.complete(lease, document, f"/results/{index}" if index % 2 else None)
    for fraction in PROGRESS:
        await submit(store, job_type="running", priority=-5)
        lease = await claim_one(store, "running")
        await store.report_progress(lease, fraction, f"at {fraction}")
    await submit(store, job_type="running", max_attempts=1)
    lease = await claim_one(store, "running")
    await store.report_progress(lease, None, "no fraction yet")
    await submit(store, job_type="failing", max_attempts=1)
    await store.fail_attempt(await claim_one(store, "failing"), "ZeroDivisionError: ☠", None)
    queued = await submit(store, job_type="aborted")
    await store.request_abort(queued.id, None, "changed my mind")
    await submit(store, tenant="globex", payload={"other": "tenant"})


async def test_a_page_is_what_the_job_route_writes_for_each_job(store: Store) -> None:
    await make_every_kind_of_job(store)
    everything = await assert_pages_agree(store, JobQuery(tenant=None, limit=1000))
    states = {item["status"] for item in everything}
    assert {"INITIALIZED", "RUNNING", "COMPLETED", "ERROR", "ABORTED"} <= states
    assert {item["code"] for item in everything} == {0, 1}
    # Newest first, as the records are.
    assert [item["created"] for item in everything] == sorted(
        (item["created"] for item in everything), reverse=True)
    for query in (JobQuery(tenant="acme", limit=3), JobQuery(tenant="acme", offset=4, limit=5),
                  JobQuery(tenant=None, statuses=[JobState.RUNNING]),
                  JobQuery(tenant=None, job_type="done", offset=2, limit=2),
                  JobQuery(tenant="globex"), JobQuery(tenant="nobody"),
                  JobQuery(tenant=None, offset=500)):
        await assert_pages_agree(store, query)


async def test_progress_and_odd_numbers_keep_their_json_kind(store: Store) -> None:
    await make_every_kind_of_job(store)
    page = await store.list_jobs_json(JobQuery(tenant=None, job_type="running", limit=1000))
    text = page.data.decode()
    # 0.0 and 1.0 stay floats, as the job route writes them.
    assert '"progress":0.0' in text.replace(" ", "")
    assert '"progress":1.0' in text.replace(" ", "")
    listed = {item["progressMessage"]: item["progress"] for item in orjson.loads(page.data)}
    assert listed == {**{f"at {fraction}": fraction for fraction in PROGRESS},
                      "no fraction yet": None}


async def test_instants_are_the_ones_the_job_route_shows(
        store: Store, target: StoreTarget) -> None:
    jobs = [await submit(store, description=f"instant {index}")
            for index in range(len(EPOCHS))]
    await set_instants(target, [job.id for job in jobs])
    items = await assert_pages_agree(store, JobQuery(tenant=None, limit=100))
    created = {item["description"]: item["created"] for item in items}
    if target.kind == "sqlite":
        assert created["instant 0"].endswith(":20.007812Z")
        assert created["instant 1"].endswith(":20.023438Z")
        assert created["instant 2"].endswith(":21Z")
        assert created["instant 3"].endswith(":20Z")
    assert created["instant 4"].endswith(":20.500000Z")


async def set_instants(target: StoreTarget, ids: list[UUID]) -> None:
    """Give each job one of EPOCHS as its creation and other times, written straight
    into the database (no store call writes a chosen instant)."""
    if target.kind == "sqlite":
        with sqlite3.connect(target.location) as conn:
            for job_id, epoch in zip(ids, EPOCHS, strict=True):
                conn.execute("UPDATE jobs SET created_at = ?, updated_at = ?, started_at = ?,"
                             " finished_at = ? WHERE id = ?",
                             (epoch, epoch + 0.5, epoch - 1e-7, epoch, str(job_id)))
        return
    with psycopg.connect(target.location, autocommit=True) as conn:
        for job_id, epoch in zip(ids, EPOCHS, strict=True):
            moment = datetime.fromtimestamp(epoch, UTC)
            conn.execute("UPDATE jobs SET created_at = %s, updated_at = %s, started_at = %s,"
                         " finished_at = %s WHERE id = %s",
                         (moment, moment + timedelta(microseconds=500_000),
                          moment - timedelta(microseconds=1), moment, job_id))


@pytest.mark.parametrize("count", [0, 1, 1000])
async def test_empty_single_and_full_pages(store: Store, count: int) -> None:
    for index in range(count):
        await submit(store, payload={"i": index})
    page = await store.list_jobs_json(JobQuery(tenant="acme", limit=1000))
    assert page.count == page.total_count == count
    items = orjson.loads(page.data)
    records = await store.list_jobs(JobQuery(tenant="acme", limit=1000))
    assert [item["statusId"] for item in items] == [str(job.id) for job in records.jobs]
    assert sorted(item["payload"]["i"] for item in items) == list(range(count))


async def test_a_page_listed_again_shows_every_change_since(
        store: Store, target: StoreTarget) -> None:
    """Each process keeps the documents the database wrote by row version
    (store/rendered.py): whatever changed between two listings, the second shows it."""
    jobs = [await submit(store, job_type="echo", payload={"i": index}) for index in range(12)]
    everything = JobQuery(tenant=None, limit=1000)
    await assert_pages_agree(store, everything)
    lease = await claim_one(store, "echo")
    await store.report_progress(lease, 0.25, "a quarter")
    await assert_pages_agree(store, everything)
    await store.report_progress(lease, 0.5, "half")
    finished = await claim_one(store, "echo")
    await store.complete(finished, {"answer": 42}, None)
    await store.request_abort(jobs[-1].id, None, "not needed")
    await submit(store, job_type="echo", payload={"i": "new"})
    await store.purge(datetime.now(UTC) + timedelta(seconds=1))  # the finished ones go
    items = await assert_pages_agree(store, everything)
    assert [item["progressMessage"] for item in items if item["status"] == "RUNNING"] == ["half"]
    assert all(item["status"] in ("INITIALIZED", "RUNNING") for item in items)
    if target.kind == "postgres":
        # Written straight into the database with the same `updated_at`: the row's new
        # version (`xmin`) alone must be enough for the page to show it. (SQLite keys on
        # `change_seq`, which only the store, the owner of its file, moves.)
        await set_description_keeping_updated_at(target, jobs[3].id,
                                                  "changed behind the store")
        items = await assert_pages_agree(store, everything)
        assert "changed behind the store" in {item["description"] for item in items}
    for query in (JobQuery(tenant=None, statuses=[JobState.RUNNING]),
                  JobQuery(tenant=None, offset=3, limit=4)):
        await assert_pages_agree(store, query)
        await assert_pages_agree(store, query)


async def set_description_keeping_updated_at(
        target: StoreTarget, job_id: UUID, description: str) -> None:
    with psycopg.connect(target.location, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET description = %s WHERE id = %s", (description, job_id))
