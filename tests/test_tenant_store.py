"""Tenants in the store contract, on both stores: fair claims, and the limits an admin
sets (running, queued, submit rate, priority), also under concurrent claims and
submits from two store instances, as two processes would make them."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import pytest

from genai_jobs.domain import (
    JobQuery,
    JobState,
    Lease,
    PriorityNotAllowed,
    TenantLimitReached,
    TenantLimits,
)
from genai_jobs.store import Store
from tests.store_support import (
    new_job,
    submit,
)

# Claims in these tests never finish their jobs: the lease only has to outlive the test.
LEASE = 600.0


async def claim_tenants(store: Store, count: int) -> list[str]:
    """The tenants of `count` jobs claimed one at a time, in claim order."""
    tenants: list[str] = []
    for _ in range(count):
        leases = await store.claim("worker", {"echo"}, LEASE, 1)
        tenants.extend(lease.job.tenant for lease in leases)
    return tenants


async def running_of(store: Store, tenant: str) -> int:
    page = await store.list_jobs(JobQuery(tenant=tenant, statuses=[JobState.RUNNING], limit=1000))
    return page.total_count


async def test_claims_take_turns_across_tenants_at_equal_priority(store: Store) -> None:
    for _ in range(30):
        await submit(store, tenant="flood")
    await submit(store, tenant="b")
    await submit(store, tenant="b")
    await submit(store, tenant="c")
    # The tenant running the fewest jobs goes next; ties go to the oldest head.
    assert await claim_tenants(store, 7) == ["flood", "b", "c", "flood", "b", "flood", "flood"]


async def test_a_batch_claim_is_fair_too(store: Store) -> None:
    for _ in range(20):
        await submit(store, tenant="flood")
    await submit(store, tenant="late")
    leases = await store.claim("worker", {"echo"}, LEASE, 3)
    assert sorted(lease.job.tenant for lease in leases) == ["flood", "flood", "late"]


async def test_priority_still_comes_first_and_each_tenant_stays_fifo(store: Store) -> None:
    first = await submit(store, tenant="a")
    second = await submit(store, tenant="a")
    urgent = await submit(store, tenant="b", priority=5)
    order: list[UUID] = []
    for _ in range(3):
        order.extend(lease.job.id for lease in await store.claim("w", {"echo"}, LEASE, 1))
    assert order == [urgent.id, first.id, second.id]


async def test_a_tenant_at_its_running_limit_is_skipped(store: Store) -> None:
    await store.set_tenant_limits(TenantLimits("flood", max_running=2))
    for _ in range(10):
        await submit(store, tenant="flood")
    await submit(store, tenant="quiet")
    leases = await store.claim("worker", {"echo"}, LEASE, 10)
    assert sorted(lease.job.tenant for lease in leases) == ["flood", "flood", "quiet"]
    assert await store.claim("worker", {"echo"}, LEASE, 10) == []
    # A finished job frees a slot for the same tenant.
    await store.complete(next(lease for lease in leases if lease.job.tenant == "flood"),
                         {"ok": True}, None)
    assert [lease.job.tenant for lease in await store.claim("w", {"echo"}, LEASE, 10)] == [
        "flood"]


async def test_defaults_apply_to_tenants_without_their_own(store: Store) -> None:
    await store.set_tenant_limits(TenantLimits("*", max_running=1, max_priority=3))
    await store.set_tenant_limits(TenantLimits("vip", max_running=3))
    for tenant in ("plain", "vip"):
        for _ in range(5):
            await submit(store, tenant=tenant)
    leases = await store.claim("worker", {"echo"}, LEASE, 10)
    assert sorted(lease.job.tenant for lease in leases) == ["plain", "vip", "vip", "vip"]
    # vip's own row sets no priority cap: the default's applies.
    with pytest.raises(PriorityNotAllowed):
        await submit(store, tenant="vip", priority=4)


async def test_concurrent_claims_never_overshoot_a_running_limit(
        store: Store, other_instance: Store) -> None:
    await store.set_tenant_limits(TenantLimits("flood", max_running=3))
    for _ in range(40):
        await submit(store, tenant="flood")

    async def claim(instance: Store) -> list[Lease]:
        return await instance.claim(f"w{id(instance)}", {"echo"}, LEASE, 1)

    rounds = await asyncio.gather(*(claim(instance) for instance in [store, other_instance] * 8))
    assert sum(len(leases) for leases in rounds) == 3
    assert await running_of(store, "flood") == 3


async def test_a_full_queue_refuses_with_a_retry_hint_and_stores_nothing(store: Store) -> None:
    await store.set_tenant_limits(TenantLimits("a", max_queued=2))
    kept = await submit(store, tenant="a", key="k1", request_hash="h1")
    await submit(store, tenant="a")
    with pytest.raises(TenantLimitReached) as refused:
        await submit(store, tenant="a")
    assert refused.value.limit == "max_queued"
    assert refused.value.retry_after_seconds >= 1
    assert (await store.list_jobs(JobQuery(tenant="a"))).total_count == 2
    # A replay of a job it already made is not a new job: answered, not refused.
    replay = await store.submit(new_job(tenant="a", key="k1", request_hash="h1"))
    assert (replay.created, replay.job.id) == (False, kept.id)
    # Other tenants are not limited, and a started job leaves the queue.
    await submit(store, tenant="b")
    await store.claim("w", {"echo"}, LEASE, 1)
    await submit(store, tenant="a")


async def test_concurrent_submits_never_overshoot_a_queue_limit(
        store: Store, other_instance: Store) -> None:
    await store.set_tenant_limits(TenantLimits("a", max_queued=5))

    async def attempt(instance: Store) -> bool:
        try:
            await submit(instance, tenant="a")
        except TenantLimitReached:
            return False
        return True

    instances = [store, other_instance] * 10
    outcomes = await asyncio.gather(*(attempt(instance) for instance in instances))
    assert outcomes.count(True) == 5
    assert (await store.list_jobs(JobQuery(tenant="a"))).total_count == 5


async def test_the_submit_rate_is_a_sliding_window(store: Store) -> None:
    await store.set_tenant_limits(TenantLimits("a", submits_per_second=2))
    await submit(store, tenant="a")
    await submit(store, tenant="a")
    with pytest.raises(TenantLimitReached) as refused:
        await submit(store, tenant="a")
    assert refused.value.limit == "submits_per_second"
    assert refused.value.retry_after_seconds == 1
    deadline = time.monotonic() + 5
    while True:  # accepted again once the window has moved on: about a second
        try:
            await submit(store, tenant="a")
            break
        except TenantLimitReached:
            assert time.monotonic() < deadline, "the window never moved on"
            await asyncio.sleep(0.05)
    assert (await store.list_jobs(JobQuery(tenant="a"))).total_count == 3


async def test_a_priority_above_the_cap_is_refused(store: Store) -> None:
    await store.set_tenant_limits(TenantLimits("a", max_priority=10))
    await submit(store, tenant="a", priority=10)
    with pytest.raises(PriorityNotAllowed) as refused:
        await submit(store, tenant="a", priority=11)
    assert "10" in str(refused.value)
    assert (await store.list_jobs(JobQuery(tenant="a"))).total_count == 1


async def test_limits_are_replaced_listed_and_lifted(store: Store) -> None:
    await store.set_tenant_limits(TenantLimits("a", max_running=1, max_queued=9))
    await store.set_tenant_limits(TenantLimits("a", submits_per_second=0.5))
    await store.set_tenant_limits(TenantLimits("*", max_priority=0))
    listed = {limits.tenant: limits for limits in await store.list_tenant_limits()}
    assert set(listed) == {"*", "a"}
    assert (listed["a"].max_running, listed["a"].max_queued,
            listed["a"].submits_per_second) == (None, None, 0.5)
    assert listed["a"].updated_at is not None
    await store.set_tenant_limits(TenantLimits("a"))
    assert [limits.tenant for limits in await store.list_tenant_limits()] == ["*"]


async def test_usage_counts_queued_and_running_per_tenant(store: Store) -> None:
    for tenant in ("a", "a", "a", "b"):
        await submit(store, tenant=tenant)
    await claim_tenants(store, 2)
    assert await store.tenant_usage() == {"a": (2, 1), "b": (0, 1)}
