"""Procrastinate beside genai-jobs: PostgreSQL (psycopg 3) on the same server genai-jobs uses,
2 `procrastinate worker --concurrency 1` processes, a no-op task.

    bench/.venv-peers/bin/python bench/peers/procrastinate_peer.py --mode throughput --jobs 5000
    bench/.venv-peers/bin/python bench/peers/procrastinate_peer.py --mode roundtrip --jobs 300

Prints one JSON object on stdout (see bench/peers/README.md). Creates its own database
(default bench_peers_procrastinate: dropped if left over, created, schema applied) and drops
it at the end; touches no other database.

Procrastinate stores no return values: "results kept" here means the finished job rows
(status 'succeeded') and their events stay in the tables (the worker's default
--delete-jobs never).

This file is also the app the workers load (`procrastinate --app procrastinate_peer.app`).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Run as the module `procrastinate_peer`, never as `__main__`: the workers import this
    # file by that name, so the client and the workers share one app and task.
    import procrastinate_peer

    sys.exit(procrastinate_peer.main())

import argparse
import importlib.metadata as md
import os
import time
from typing import Any

import psycopg
from _common import (
    BenchError,
    Deadline,
    Workers,
    check_stop,
    common_settings,
    drain,
    emit,
    exit_on_signals,
    hold_run_lock,
    log,
    parse_args,
    report_roundtrip,
    report_throughput,
    roundtrip_loop,
    wait_until,
)
from procrastinate import App, PsycopgConnector

SERVER_URL = os.environ.get("PEERS_PG_SERVER_URL", "postgresql://postgres@127.0.0.1:5432")
DATABASE = os.environ.get("PEERS_PG_DATABASE", "bench_peers_procrastinate")
QUEUE = "peers"
VERSION = md.version("procrastinate")

app = App(connector=PsycopgConnector(conninfo=f"{SERVER_URL}/{DATABASE}"))


@app.task(name="peers.noop", queue=QUEUE)
async def noop() -> dict[str, bool]:
    """The default: a coroutine, run in the worker's event loop."""
    return {"ok": True}


@app.task(name="peers.noop_sync", queue=QUEUE)
def noop_sync() -> dict[str, bool]:
    """--task sync: a plain function, which Procrastinate runs in a thread."""
    return {"ok": True}


TASKS = {"async": noop, "sync": noop_sync}
FAILED = {"failed", "cancelled", "aborted"}


def _extra_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=sorted(TASKS), default="async",
                   help="the no-op as a coroutine (default) or a plain function")


def main(argv: list[str] | None = None) -> int:
    """The server and database come from PEERS_PG_SERVER_URL and PEERS_PG_DATABASE only, so
    this process's app and the workers' are the same one."""
    args = parse_args("procrastinate", _extra_args, argv)
    if not DATABASE.startswith("bench_peers_"):
        raise SystemExit("PEERS_PG_DATABASE must start with bench_peers_ (it is dropped)")
    exit_on_signals()
    try:
        lock = hold_run_lock(args.lock_wait)  # noqa: F841 - held until this process exits
    except BenchError as exc:
        log(f"[procrastinate] FAILED: {exc}")
        return 1
    env = {"PEERS_PG_SERVER_URL": SERVER_URL, "PEERS_PG_DATABASE": DATABASE}
    task = TASKS[args.task]
    admin = psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True)
    workers = Workers("procrastinate", keep_logs=args.keep_logs)
    db: psycopg.Connection[Any] | None = None
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
        db = psycopg.connect(f"{SERVER_URL}/{DATABASE}", autocommit=True)  # the harness's own
        with app.open():
            app.schema_manager.apply_schema()
            for index in (1, 2):
                workers.start([sys.executable, "-m", "procrastinate", "--app",
                               "procrastinate_peer.app", "--log-level", "warning", "worker",
                               "--name", f"peer{index}", "--queues", QUEUE,
                               "--concurrency", "1"], env=env)
            result = _run(args, task, db, workers)
    except BenchError as exc:
        log(f"[procrastinate] FAILED: {exc}")
        return 1
    finally:
        workers.stop()
        if db is not None:
            db.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.close()
    emit(result)
    return 0


def _run(args: argparse.Namespace, task: Any, db: psycopg.Connection[Any],
         workers: Workers) -> dict[str, Any]:
    deadline = Deadline(args.timeout, f"procrastinate {args.mode} run")
    wait_until(lambda: _scalar(db, "SELECT count(*) FROM procrastinate_workers") >= 2,
               deadline.left(), "procrastinate workers registering", workers=workers)
    log(f"[procrastinate] workers ready; {args.warmup} warm-up round trips")
    probe = RoundTrip(task, db, args.poll_ms / 1000, args.job_timeout)
    if args.warmup:
        roundtrip_loop(args.warmup, probe.one, 0.0, deadline, workers)
    probe.reset()
    settings = _settings(args, db)
    if args.mode == "throughput":
        result = _throughput(args, task, db, deadline, workers, settings)
    else:
        running, completed = roundtrip_loop(args.jobs, probe.one, args.pause_ms / 1000,
                                            deadline, workers)
        result = report_roundtrip("procrastinate", VERSION, args, running, completed,
                                  settings, probe.details())
    workers.check_alive()
    return result


def _scalar(db: psycopg.Connection[Any], query: str) -> Any:
    row = db.execute(query).fetchone()
    assert row is not None
    return row[0]


class RoundTrip:
    """One job: defer, then poll `app.job_manager.get_job_status(id)` (Procrastinate's own
    status call: one SELECT) with a `poll` s sleep. 'doing' = RUNNING, 'succeeded' = COMPLETED.
    Procrastinate sends no notification on status changes, so polling is the way."""

    def __init__(self, task: Any, db: psycopg.Connection[Any], poll: float,
                 timeout: float) -> None:
        self.task = task
        self.db = db
        self.poll = poll
        self.timeout = timeout
        self.reset()

    def reset(self) -> None:
        self.unobserved = 0  # jobs whose 'doing' fell between two polls
        self.recorded_running_ms: list[float] = []

    def one(self) -> tuple[float, float]:
        wall = time.time()
        start = time.perf_counter()
        job_id = self.task.defer()
        end = start + self.timeout
        running = None
        while True:
            status = app.job_manager.get_job_status(job_id).value
            now = time.perf_counter()
            if status == "doing" and running is None:
                running = now
            elif status == "succeeded":
                if running is None:
                    self.unobserved += 1
                    running = now  # it was running at the latest by now
                row = self.db.execute(
                    "SELECT extract(epoch FROM at) FROM procrastinate_events"
                    " WHERE job_id = %s AND type = 'started'", (job_id,)).fetchone()
                if row is not None:
                    self.recorded_running_ms.append(round((float(row[0]) - wall) * 1000, 4))
                return (running - start) * 1000, (now - start) * 1000
            elif status in FAILED:
                raise BenchError(f"procrastinate job {job_id} ended {status}")
            check_stop()
            if now > end:
                raise BenchError(f"procrastinate job {job_id} not done within {self.timeout} s")
            time.sleep(self.poll)

    def details(self) -> dict[str, Any]:
        return {"running_unobserved": self.unobserved,
                "running_recorded_ms": self.recorded_running_ms}


def _throughput(args: argparse.Namespace, task: Any, db: psycopg.Connection[Any],
                deadline: Deadline, workers: Workers, settings: dict[str, Any]) -> dict[str, Any]:
    def done_among(batch: list[int]) -> set[int]:
        done = set()
        rows = db.execute("SELECT id, status::text FROM procrastinate_jobs WHERE id = ANY(%s)",
                          (list(batch),)).fetchall()
        for job_id, status in rows:
            if status == "succeeded":
                done.add(job_id)
            elif status in FAILED:
                raise BenchError(f"procrastinate job {job_id} ended {status}")
        return done

    log(f"[procrastinate] submitting {args.jobs} jobs")
    ids: list[int] = []
    first = time.time()
    for number in range(args.jobs):
        if number % 100 == 0:
            deadline.check()
        ids.append(task.defer())
    submitted = time.time()
    observed = drain(ids, done_among, deadline, args.drain_poll_ms / 1000, workers)
    row = db.execute("SELECT count(*), extract(epoch FROM max(at)) FROM procrastinate_events"
                     " WHERE type = 'succeeded' AND job_id = ANY(%s)", (ids,)).fetchone()
    if row is None or row[0] != len(ids):
        raise BenchError(f"succeeded events for {row and row[0]} of {len(ids)} jobs")
    return report_throughput("procrastinate", VERSION, args, first, float(row[1]), observed,
                             submitted, settings)


def _settings(args: argparse.Namespace, db: psycopg.Connection[Any]) -> dict[str, Any]:
    settings = common_settings(args)
    settings.update({
        "workers": "2 x `procrastinate --log-level warning worker --concurrency 1` "
                   "(defaults: listen/notify on, fetch polling 5 s, delete jobs never)",
        "executing_processes": 2,
        "task_kind": ("coroutine run in the worker's event loop" if args.task == "async"
                      else "plain function run in a thread"),
        "postgresql": _scalar(db, "SHOW server_version"),
        "synchronous_commit": _scalar(db, "SHOW synchronous_commit"),
        "psycopg": md.version("psycopg"), "database": DATABASE,
        "results_kept": "job rows and events kept (Procrastinate stores no return value)",
    })
    if args.mode == "roundtrip":
        settings["observed_by"] = (f"client polling app.job_manager.get_job_status(id) (one "
                                   f"SELECT) with a {args.poll_ms:g} ms sleep; 'doing' = "
                                   "RUNNING, 'succeeded' = COMPLETED")
    else:
        settings["submit_call"] = ("task.defer() with the app opened synchronously "
                                   "(app.open(): Procrastinate's SyncPsycopgConnector pool)")
        settings["completed_at"] = "the job's 'succeeded' event time (procrastinate_events.at)"
    return settings
