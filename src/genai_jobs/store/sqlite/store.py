"""The embedded store: one SQLite file in WAL mode, shared by every process on the machine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from genai_jobs.domain import (
    IdempotencyConflict,
    IllegalTransition,
    Job,
    JobNotFound,
    JobPage,
    JobPageJson,
    JobQuery,
    JobState,
    JobStatus,
    Lease,
    LeaseLost,
    NewJob,
    StoreUnavailable,
    SubmitOutcome,
    TenantLimits,
    TokenNotFound,
    TokenRecord,
    check_transition,
    rules,
)
from genai_jobs.domain.tenants import priority_refusal, submit_refusal
from genai_jobs.store.base import Store
from genai_jobs.store.changes import ChangeFeed
from genai_jobs.store.migrations import load_migrations
from genai_jobs.store.rendered import RenderedJobs, Rows
from genai_jobs.store.sqlite import job_json, tenants
from genai_jobs.store.sqlite.commits import commit_signals
from genai_jobs.store.sqlite.connection import SQLiteDatabase, WriteTx
from genai_jobs.store.sqlite.rows import (
    STATUS_COLUMNS,
    dump_json,
    from_epoch,
    job_from_row,
    status_from_row,
    to_epoch,
    token_from_row,
)

T = TypeVar("T")

# Rows deleted per transaction when purging, so writers never wait long.
PURGE_BATCH = 500

_CLEAR_LEASE = "lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL"


class SQLiteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.changes = ChangeFeed()
        self._db = SQLiteDatabase(path)
        self._watcher: asyncio.Task[None] | None = None
        self._seen_seq = 0
        self._rendered = RenderedJobs()
        # Change numbers of this process's own commits, already published at commit.

    @property
    def database(self) -> SQLiteDatabase:
        """The connections and writer thread, for stores of other records on this file."""
        return self._db

    # -- life cycle -------------------------------------------------------
    async def open(self) -> None:
        await self._db.open()
        self._watcher = asyncio.create_task(self._watch_other_processes(), name="sqlite-watch")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._db.close()

    async def migrate(self) -> list[int]:
        migrations = load_migrations("genai_jobs.store.sqlite.migrations")

        def apply(tx: WriteTx) -> list[int]:
            tx.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in tx.conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for migration in migrations:
                if migration.version in done:
                    continue
                for statement in _statements(migration.sql):
                    tx.conn.execute(statement)
                tx.conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, tx.now),
                )
                applied.append(migration.version)
            return applied

        applied, _ = await self._db.write(apply, bump=False)
        return applied

    async def check_ready(self) -> None:
        expected = max(m.version for m in load_migrations("genai_jobs.store.sqlite.migrations"))
        row = self._db.query_one("SELECT MAX(version) FROM schema_migrations")
        if row is None or row[0] != expected:
            raise StoreUnavailable(f"SQLite store schema is at {row[0] if row else None}, "
                                   f"expected {expected}: run `genai-jobs migrate`")

    # -- jobs: submitters -------------------------------------------------
    async def submit(self, new: NewJob) -> SubmitOutcome:
        def insert(tx: WriteTx) -> SubmitOutcome:
            if new.idempotency_key is not None:
                earlier = tx.conn.execute(
                    "SELECT * FROM jobs WHERE tenant = ? AND idempotency_key = ?",
                    (new.tenant, new.idempotency_key),
                ).fetchone()
                if earlier is not None:
                    if earlier["request_hash"] != new.request_hash:
                        raise IdempotencyConflict(new.idempotency_key)
                    return SubmitOutcome(job_from_row(earlier), created=False)
            limits = tenants.limits_of(tx.conn, new.tenant)
            refused = priority_refusal(limits, new.priority) or submit_refusal(
                limits, *tenants.submit_counts(tx.conn, limits, tx.now), tx.now)
            if refused is not None:
                raise refused
            job_id = uuid.uuid4()
            row = tx.conn.execute(
                "INSERT INTO jobs (id, tenant, job_type, payload, description, status,"
                " max_attempts, priority, created_at, updated_at, expires_at, run_after,"
                " idempotency_key, request_hash, change_seq)"
                " VALUES (?, ?, ?, ?, ?, 'INITIALIZED', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (str(job_id), new.tenant, new.job_type, dump_json(new.payload), new.description,
                 new.max_attempts, new.priority, tx.now, tx.now, to_epoch(new.expires_at),
                 tx.now, new.idempotency_key, new.request_hash, tx.seq),
            ).fetchone()
            tx.changed.add(job_id)
            tx.work_available = True
            return SubmitOutcome(job_from_row(row), created=True)

        return await self._write(insert)

    async def record_completed(self, new: NewJob, result: Any, result_location: str | None) -> Job:
        def insert(tx: WriteTx) -> Job:
            job_id = uuid.uuid4()
            row = tx.conn.execute(
                "INSERT INTO jobs (id, tenant, job_type, payload, description, status, result,"
                " result_location, progress, attempts, max_attempts, priority, created_at,"
                " updated_at, started_at, finished_at, expires_at, run_after, change_seq)"
                " VALUES (?, ?, ?, ?, ?, 'COMPLETED', ?, ?, 1.0, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING *",
                (str(job_id), new.tenant, new.job_type, dump_json(new.payload), new.description,
                 dump_json(result), result_location, new.max_attempts, new.priority, tx.now,
                 tx.now, tx.now, tx.now, to_epoch(new.expires_at), tx.now, tx.seq),
            ).fetchone()
            tx.changed.add(job_id)
            return job_from_row(row)

        return await self._write(insert)

    async def get(self, job_id: UUID, tenant: str | None = None) -> Job:
        row = self._db.query_one("SELECT * FROM jobs WHERE id = ?", (str(job_id),))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def is_empty(self) -> bool:
        return not self._db.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            ())

    async def list_jobs(self, query: JobQuery) -> JobPage:
        where, params = _list_filter(query)

        def read(conn: sqlite3.Connection) -> JobPage:
            total = conn.execute(f"SELECT COUNT(*) FROM jobs{where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM jobs{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
            return JobPage(jobs=[job_from_row(row) for row in rows], total_count=int(total))

        # A page of 1,000 jobs takes tens of milliseconds to read and convert: off the
        # event loop, which keeps answering status polls meanwhile.
        return await self._db.read_off_loop(read)

    async def list_jobs_json(self, query: JobQuery) -> JobPageJson:
        where, params = _list_filter(query)

        async def read(asked: list[str] | None, every: bool) -> Rows:
            arguments: list[Any] = [*params, query.limit, query.offset, *params]
            if asked is None:
                statement = job_json.page_versions_statement(where)
            else:
                statement = job_json.page_documents_statement(where)
                arguments += [every, dump_json(asked)]
            return await self._db.read_off_loop(
                functools.partial(_all_rows, statement, arguments))

        return await self._rendered.page(read)

    async def request_abort(self, job_id: UUID, tenant: str | None, reason: str) -> Job:
        def abort(tx: WriteTx) -> Job:
            row = tx.conn.execute("SELECT * FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
            if row is None or (tenant is not None and row["tenant"] != tenant):
                raise JobNotFound(job_id)
            state = JobState(row["status"])
            if state is JobState.ABORTED:
                return job_from_row(row)
            check_transition(state, JobState.ABORTED)
            tx.changed.add(job_id)
            if state is JobState.INITIALIZED:
                return _update_one(tx, job_id, state, JobState.ABORTED, {
                    "message": rules.aborted_before_start(reason),
                    "finished_at": tx.now,
                })
            if row["abort_reason"] is not None:
                return job_from_row(row)
            return _update_one(tx, job_id, state, state, {
                "abort_reason": reason,
                "message": rules.abort_requested(reason),
            })

        return await self._write(abort)

    # -- jobs: workers ----------------------------------------------------
    async def claim(
        self, owner: str, job_types: Collection[str], lease_seconds: float, limit: int
    ) -> list[Lease]:
        if not job_types or limit < 1:
            return []
        types = sorted(job_types)
        marks = ", ".join("?" for _ in types)
        now = time.time()
        # A worker looks for work after every job and on every wake; most looks of an
        # idle worker find nothing. Looking first on the reader costs no write lock and
        # no fsync; a job committed after this look wakes the worker again.
        if not self._db.query("SELECT 1 FROM jobs WHERE status = 'INITIALIZED'"
                              f" AND run_after <= ? AND expires_at > ? AND job_type IN ({marks})"
                              " LIMIT 1", [now, now, *types]):
            return []

        def take(tx: WriteTx) -> list[Lease]:
            leases = []
            for _ in range(limit):
                job_id = tenants.fairest_head(tx.conn, types, tx.now)
                if job_id is None:
                    break
                lease_id = uuid.uuid4()
                expires = tx.now + lease_seconds
                row = tx.conn.execute(
                    "UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, message = '',"
                    " lease_id = ?, lease_owner = ?, lease_expires_at = ?,"
                    " started_at = COALESCE(started_at, ?), updated_at = ?, change_seq = ?"
                    " WHERE id = ? AND status = 'INITIALIZED' RETURNING *",
                    (str(lease_id), owner, expires, tx.now, tx.now, tx.seq, job_id),
                ).fetchone()
                job = job_from_row(row)
                tx.changed.add(job.id)
                leases.append(Lease(job, lease_id, owner, from_epoch(expires)))
            return leases

        return await self._write(take)

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Job:
        def renew(tx: WriteTx) -> Job:
            row = tx.conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_id = ?"
                " AND status = 'RUNNING' AND lease_expires_at >= ? RETURNING *",
                (tx.now + lease_seconds, str(lease.job_id), str(lease.lease_id), tx.now),
            ).fetchone()
            if row is None:
                raise LeaseLost(lease.job_id)
            return job_from_row(row)

        # A renewal changes nothing anyone waits for: no change number.
        job, _ = await self._db.write(renew, bump=False)
        return job

    async def report_progress(self, lease: Lease, fraction: float | None, message: str) -> None:
        def record(tx: WriteTx) -> None:
            updated = tx.conn.execute(
                "UPDATE jobs SET progress = COALESCE(?, progress), progress_message = ?,"
                " updated_at = ?, change_seq = ? WHERE id = ? AND lease_id = ?"
                " AND status = 'RUNNING' AND lease_expires_at >= ?",
                (fraction, message, tx.now, tx.seq, str(lease.job_id), str(lease.lease_id),
                 tx.now),
            ).rowcount
            if updated != 1:
                raise LeaseLost(lease.job_id)
            tx.progressed.add(lease.job_id)

        await self._write(record)

    async def complete(self, lease: Lease, result: Any, result_location: str | None) -> Job:
        def finish(tx: WriteTx) -> Job:
            return _end_attempt(tx, lease, JobState.COMPLETED, {
                "result": dump_json(result),
                "result_location": result_location,
                "progress": 1.0,
                "message": "",
                "finished_at": tx.now,
            })

        return await self._write(finish)

    async def fail_attempt(self, lease: Lease, message: str, retry_at: datetime | None) -> Job:
        def fail(tx: WriteTx) -> Job:
            if retry_at is None:
                return _end_attempt(tx, lease, JobState.ERROR, {
                    "message": message, "finished_at": tx.now,
                })
            tx.work_available = True
            return _end_attempt(tx, lease, JobState.INITIALIZED, {
                "message": message, "run_after": to_epoch(retry_at),
            })

        return await self._write(fail)

    async def finish(self, lease: Lease, state: JobState, message: str) -> Job:
        if state not in (JobState.ABORTED, JobState.EXPIRED):
            raise ValueError(f"finish() ends an attempt as ABORTED or EXPIRED, not {state}")

        def stop(tx: WriteTx) -> Job:
            # The handler has stopped, so the truth can be written even if the
            # lease lapsed meanwhile; only another holder's lease forbids it.
            return _update_leased(tx, lease, state, {"message": message, "finished_at": tx.now},
                                  require_live_lease=False)

        return await self._write(stop)

    async def release(self, lease: Lease, message: str) -> Job:
        def give_back(tx: WriteTx) -> Job:
            tx.work_available = True
            return _update_leased(tx, lease, JobState.INITIALIZED, {
                "message": message, "run_after": tx.now,
                "attempts": max(lease.job.attempts - 1, 0),
            }, require_live_lease=False)

        return await self._write(give_back)

    # -- maintenance ------------------------------------------------------
    async def expire_overdue(
        self, now: datetime | None, running_grace_seconds: float
    ) -> list[Job]:
        moment = time.time() if now is None else to_epoch(now)

        def expire(tx: WriteTx) -> list[Job]:
            rows = tx.conn.execute(
                f"UPDATE jobs SET status = 'EXPIRED', {_CLEAR_LEASE}, finished_at = ?,"
                " updated_at = ?, change_seq = ?,"
                " message = ? ||"
                "   strftime('%Y-%m-%dT%H:%M:%SZ', expires_at, 'unixepoch')"
                " WHERE (status = 'INITIALIZED' AND expires_at <= ?)"
                "    OR (status = 'RUNNING' AND expires_at <= ?) RETURNING *",
                (tx.now, tx.now, tx.seq, rules.EXPIRED_BY_SWEEP, moment,
                 moment - running_grace_seconds),
            ).fetchall()
            jobs = [job_from_row(row) for row in rows]
            tx.changed.update(job.id for job in jobs)
            return jobs

        return await self._write(expire)

    async def reclaim_lapsed(
        self, now: datetime | None, retry_delay_seconds: float
    ) -> list[Job]:
        moment = time.time() if now is None else to_epoch(now)

        def reclaim(tx: WriteTx) -> list[Job]:
            rows = tx.conn.execute(
                "SELECT * FROM jobs WHERE status = 'RUNNING' AND lease_expires_at < ?", (moment,)
            ).fetchall()
            return [_take_back(tx, job_from_row(row), retry_delay_seconds) for row in rows]

        return await self._write(reclaim)

    async def purge(self, finished_before: datetime) -> int:
        cutoff = to_epoch(finished_before)

        def delete_batch(tx: WriteTx) -> int:
            return tx.conn.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at < ?"
                " AND status IN ('COMPLETED', 'ERROR', 'ABORTED', 'EXPIRED') LIMIT ?)",
                (cutoff, PURGE_BATCH),
            ).rowcount

        total = 0
        while True:  # bounded: every pass deletes rows or stops
            deleted, _ = await self._db.write(delete_batch, bump=False)
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    async def count_by_state(self) -> dict[JobState, int]:
        counts = {state: 0 for state in JobState}
        for status, count in self._db.query("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
            counts[JobState(status)] = count
        return counts

    # -- tokens -----------------------------------------------------------
    async def create_token(self, tenant: str, is_admin: bool, secret_hash: str) -> TokenRecord:
        def insert(tx: WriteTx) -> TokenRecord:
            row = tx.conn.execute(
                "INSERT INTO tokens (id, tenant, is_admin, secret_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING *",
                (str(uuid.uuid4()), tenant, int(is_admin), secret_hash, tx.now),
            ).fetchone()
            return token_from_row(row)

        token, _ = await self._db.write(insert, bump=False)
        return token

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        row = self._db.query_one(
            "SELECT * FROM tokens WHERE secret_hash = ? AND revoked_at IS NULL", (secret_hash,)
        )
        return None if row is None else token_from_row(row)

    async def find_token_and_status(
            self, secret_hash: str, job_id: UUID) -> tuple[TokenRecord | None, JobStatus | None]:
        row = self._db.query_one(
            "SELECT t.id AS token_id, t.tenant AS token_tenant, t.is_admin AS token_is_admin,"
            " t.created_at AS token_created_at, t.last_used_at AS token_last_used_at,"
            f" t.revoked_at AS token_revoked_at, {STATUS_COLUMNS}"
            " FROM tokens t LEFT JOIN jobs j ON j.id = ? AND (t.is_admin OR j.tenant = t.tenant)"
            " WHERE t.secret_hash = ? AND t.revoked_at IS NULL", (str(job_id), secret_hash))
        if row is None:
            return None, None
        return token_from_row(row, "token_"), None if row["id"] is None else status_from_row(row)

    async def touch_token(self, token_id: UUID, when: datetime) -> None:
        def touch(tx: WriteTx) -> None:
            tx.conn.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?",
                            (to_epoch(when), str(token_id)))

        await self._db.write(touch, bump=False)

    async def list_tokens(self) -> list[TokenRecord]:
        rows = self._db.query("SELECT * FROM tokens ORDER BY created_at")
        return [token_from_row(row) for row in rows]

    async def revoke_token(self, token_id: UUID) -> TokenRecord:
        def revoke(tx: WriteTx) -> TokenRecord:
            row = tx.conn.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *",
                (tx.now, str(token_id)),
            ).fetchone()
            if row is None:
                raise TokenNotFound(token_id)
            return token_from_row(row)

        token, _ = await self._db.write(revoke, bump=False)
        return token

    async def count_tokens(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM tokens")[0][0])

    # -- change propagation -------------------------------------------------
    # -- tenants ----------------------------------------------------------
    async def list_tenant_limits(self) -> list[TenantLimits]:
        return tenants.read_limits(self._db.reader)

    async def set_tenant_limits(self, limits: TenantLimits) -> None:
        def write(tx: WriteTx) -> None:
            tenants.write_limits(tx.conn, limits, tx.now)

        await self._db.write(write, bump=False)

    async def tenant_usage(self) -> dict[str, tuple[int, int]]:
        return tenants.read_usage(self._db.reader)

    async def _write(self, work: Callable[[WriteTx], T]) -> T:
        result, tx = await self._db.write(work)
        self._publish(tx.changed, tx.work_available, tx.progressed - tx.changed)
        return result

    def _publish(self, changed: Iterable[UUID], work_available: bool,
                 progressed: Iterable[UUID] = ()) -> None:
        for job_id in changed:
            self.changes.job_changed(job_id)
        for job_id in progressed:
            self.changes.job_changed(job_id, progress_only=True)
        if work_available:
            self.changes.work_available()

    async def _watch_other_processes(self) -> None:
        """Wake local waiters for commits made by other processes on this file."""
        reader = self._db.reader
        self._seen_seq = _current_seq(reader)
        data_version = reader.execute("PRAGMA data_version").fetchone()[0]
        async with commit_signals(self._db.path, lambda: self._db.write_began) as signals:
            while True:
                await signals.next_look()
                try:  # a look: one `PRAGMA data_version` unless something changed
                    version = reader.execute("PRAGMA data_version").fetchone()[0]
                    signals.looked(found_commits=version != data_version)
                    if version == data_version:
                        continue
                    data_version = version
                    self._catch_up(reader)
                except sqlite3.Error:
                    continue  # a busy or briefly unreadable file: look again next time

    def _catch_up(self, reader: sqlite3.Connection) -> None:
        rows = reader.execute(
            "SELECT id, status, run_after, change_seq FROM jobs WHERE change_seq > ?",
            (self._seen_seq,),
        ).fetchall()
        for row in rows:
            self._seen_seq = max(self._seen_seq, row["change_seq"])
        own = self._db.take_own_seqs(self._seen_seq)
        others = [row for row in rows if row["change_seq"] not in own]
        self._publish(
            (UUID(row["id"]) for row in others),
            any(row["status"] == "INITIALIZED" for row in others),
        )


def _all_rows(statement: str, arguments: list[Any],
              reader: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in reader.execute(statement, arguments)]


def _current_seq(reader: sqlite3.Connection) -> int:
    try:
        return int(reader.execute("SELECT seq FROM change_counter").fetchone()[0])
    except sqlite3.Error:
        return 0


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit midway)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not buffer.strip().startswith("--"):
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:80]}")
    return [statement for statement in statements if statement]


def _list_filter(query: JobQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.tenant is not None:
        clauses.append("tenant = ?")
        params.append(query.tenant)
    if query.statuses:
        clauses.append(f"status IN ({', '.join('?' for _ in query.statuses)})")
        params.extend(state.value for state in query.statuses)
    if query.job_type is not None:
        clauses.append("job_type = ?")
        params.append(query.job_type)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _update_one(
    tx: WriteTx, job_id: UUID, current: JobState, target: JobState, fields: dict[str, Any],
    extra_condition: str = "", extra_params: tuple[Any, ...] = (),
) -> Job:
    """The one compare-and-set every state change goes through."""
    if target is not current:
        check_transition(current, target)
    assignments = {**fields, "status": target.value, "updated_at": tx.now, "change_seq": tx.seq}
    if target.is_terminal or target is JobState.INITIALIZED:
        assignments.update(lease_id=None, lease_owner=None, lease_expires_at=None)
    sets = ", ".join(f"{column} = ?" for column in assignments)
    row = tx.conn.execute(
        f"UPDATE jobs SET {sets} WHERE id = ? AND status = ?{extra_condition} RETURNING *",
        (*assignments.values(), str(job_id), current.value, *extra_params),
    ).fetchone()
    if row is None:
        raise _lost_race(tx, job_id, current, target)
    tx.changed.add(job_id)
    return job_from_row(row)


def _lost_race(tx: WriteTx, job_id: UUID, current: JobState, target: JobState) -> Exception:
    row = tx.conn.execute("SELECT status FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
    if row is None:
        return JobNotFound(job_id)
    return IllegalTransition(row["status"], target.value)


def _update_leased(
    tx: WriteTx, lease: Lease, target: JobState, fields: dict[str, Any], *,
    require_live_lease: bool,
) -> Job:
    """A change made by the worker holding `lease`: LeaseLost if it no longer does.

    A job that would go back to the queue (a retry, a release) while an abort
    is pending is ABORTED instead: its handler has stopped, and the abort wins.
    """
    if target is JobState.INITIALIZED:
        row = tx.conn.execute(
            "SELECT abort_reason FROM jobs WHERE id = ? AND lease_id = ? AND status = 'RUNNING'",
            (str(lease.job_id), str(lease.lease_id)),
        ).fetchone()
        target, instead = rules.requeue_target(None if row is None else row["abort_reason"])
        if instead is not None:
            fields = {"message": instead, "finished_at": tx.now}
    condition = " AND lease_id = ?"
    params: tuple[Any, ...] = (str(lease.lease_id),)
    if require_live_lease:
        condition += " AND lease_expires_at >= ?"
        params = (*params, tx.now)
    try:
        return _update_one(tx, lease.job_id, JobState.RUNNING, target, fields, condition, params)
    except (IllegalTransition, JobNotFound) as exc:
        raise LeaseLost(lease.job_id) from exc


def _end_attempt(tx: WriteTx, lease: Lease, target: JobState, fields: dict[str, Any]) -> Job:
    """Record an attempt's outcome, unless the job's deadline passed first:
    then the truth is EXPIRED (the handler has already returned)."""
    row = tx.conn.execute(
        "SELECT expires_at FROM jobs WHERE id = ? AND lease_id = ? AND status = 'RUNNING'",
        (str(lease.job_id), str(lease.lease_id)),
    ).fetchone()
    if row is not None and row["expires_at"] <= tx.now:
        return _update_leased(tx, lease, JobState.EXPIRED, {
            "message": rules.EXPIRED_AT_OUTCOME, "finished_at": tx.now,
        }, require_live_lease=False)
    return _update_leased(tx, lease, target, fields, require_live_lease=True)


def _take_back(tx: WriteTx, job: Job, retry_delay_seconds: float) -> Job:
    """A lapsed lease: the worker is presumed dead and its attempt over."""
    target, message = rules.reclaim(job, retry_delay_seconds)
    fields: dict[str, Any] = {"message": message}
    if target is JobState.INITIALIZED:
        tx.work_available = True
        fields["run_after"] = tx.now + retry_delay_seconds
    else:
        fields["finished_at"] = tx.now
    return _update_one(tx, job.id, JobState.RUNNING, target, fields,
                       " AND lease_id = ?", (str(job.lease_id),))
