"""RQ beside genai-jobs: 2 `rq worker` processes with the SimpleWorker class (each runs jobs in
its own process, no fork per job), a no-op job whose result is kept.

    bench/.venv-peers/bin/python bench/peers/rq_peer.py --mode throughput --jobs 5000
    bench/.venv-peers/bin/python bench/peers/rq_peer.py --mode roundtrip --jobs 300

Prints one JSON object on stdout (see bench/peers/README.md). Uses only its own Redis
database (default db 6: FLUSHDB before and after the run; never another db).

This file is also the module the workers import the job from (`rq_peer.noop`).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Run as the module `rq_peer`, never as `__main__`: the workers import this
    # file by that name, so the client enqueues the function the workers run.
    import rq_peer

    sys.exit(rq_peer.main())

import argparse
import functools
import importlib.metadata as md
import os
import time
from typing import Any

import redis
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
    wall_from_iso,
)
from rq import VERSION, Queue, Worker
from rq.job import Job, JobStatus

REDIS_URL = os.environ.get("PEERS_RQ_REDIS_URL", "redis://127.0.0.1:6379/6")
QUEUE = "peers"
RESULT_TTL = 86_400  # results kept a day, like Celery's default (RQ's own default is 500 s)
ENDED = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def noop() -> dict[str, bool]:
    return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    """The Redis URL comes from PEERS_RQ_REDIS_URL; it must name a dedicated db index
    other than 0."""
    args = parse_args("rq", None, argv)
    exit_on_signals()
    try:
        lock = hold_run_lock(args.lock_wait)  # noqa: F841 - held until this process exits
    except BenchError as exc:
        log(f"[rq] FAILED: {exc}")
        return 1
    conn = redis.Redis.from_url(REDIS_URL)
    if not conn.connection_pool.connection_kwargs.get("db", 0):
        raise SystemExit("refusing to FLUSHDB Redis db 0: PEERS_RQ_REDIS_URL must name a "
                         "dedicated db index")
    queue = Queue(QUEUE, connection=conn)
    workers = Workers("rq", keep_logs=args.keep_logs)
    try:
        conn.flushdb()
        for index in (1, 2):
            workers.start([sys.executable, "-m", "rq.cli", "worker",
                           "--worker-class", "rq.worker.SimpleWorker",
                           "--url", REDIS_URL, "--name", f"peer{index}",
                           "--path", ".", "--logging_level", "WARNING",
                           "--disable-job-desc-logging", QUEUE])
        deadline = Deadline(args.timeout, f"rq {args.mode} run")
        wait_until(lambda: Worker.count(connection=conn) >= 2, deadline.left(),
                   "rq workers registering", workers=workers)
        log(f"[rq] workers ready; {args.warmup} warm-up round trips")
        probe = RoundTrip(queue, args.poll_ms / 1000, args.job_timeout)
        if args.warmup:
            roundtrip_loop(args.warmup, probe.one, 0.0, deadline, workers)
        probe.reset()
        settings = _settings(args, conn)
        if args.mode == "throughput":
            result = _throughput(args, queue, deadline, workers, settings)
        else:
            running, completed = roundtrip_loop(args.jobs, probe.one, args.pause_ms / 1000,
                                                deadline, workers)
            result = report_roundtrip("rq", VERSION, args, running, completed, settings,
                                      probe.details())
        workers.check_alive()
    except BenchError as exc:
        log(f"[rq] FAILED: {exc}")
        return 1
    finally:
        workers.stop()
        conn.flushdb()
        conn.close()
    emit(result)
    return 0


def _enqueue(queue: Queue) -> Job:
    return queue.enqueue(noop, result_ttl=RESULT_TTL)


class RoundTrip:
    """One job: enqueue, then poll `job.get_status()` (one HGET) with a `poll` s sleep."""

    def __init__(self, queue: Queue, poll: float, timeout: float) -> None:
        self.queue = queue
        self.poll = poll
        self.timeout = timeout
        self.reset()

    def reset(self) -> None:
        self.unobserved = 0  # jobs whose 'started' fell between two polls
        self.recorded_running_ms: list[float] = []

    def one(self) -> tuple[float, float]:
        wall = time.time()
        start = time.perf_counter()
        job = _enqueue(self.queue)
        end = start + self.timeout
        running = None
        while True:
            status = job.get_status()
            now = time.perf_counter()
            if status == JobStatus.STARTED and running is None:
                running = now
            elif status == JobStatus.FINISHED:
                if running is None:
                    self.unobserved += 1
                    running = now  # it was running at the latest by now
                job.refresh()
                if job.started_at is not None:
                    self.recorded_running_ms.append(
                        round((wall_from_iso(job.started_at) - wall) * 1000, 4))
                return (running - start) * 1000, (now - start) * 1000
            elif status in ENDED:
                raise BenchError(f"rq job {job.id} ended {status}")
            check_stop()
            if now > end:
                raise BenchError(f"rq job {job.id} not done within {self.timeout} s")
            time.sleep(self.poll)

    def details(self) -> dict[str, Any]:
        return {"running_unobserved": self.unobserved,
                "running_recorded_ms": self.recorded_running_ms}


def _done_among(conn: redis.Redis, batch: list[str]) -> set[str]:
    pipe = conn.pipeline(transaction=False)
    for job_id in batch:
        pipe.hget(Job.key_for(job_id), "status")  # what Job.get_status() reads
    done = set()
    for job_id, raw in zip(batch, pipe.execute(), strict=True):
        status = raw.decode() if raw else None
        if status == JobStatus.FINISHED:
            done.add(job_id)
        elif status in ENDED:
            raise BenchError(f"rq job {job_id} ended {status}")
    return done


def _throughput(args: argparse.Namespace, queue: Queue, deadline: Deadline, workers: Workers,
                settings: dict[str, Any]) -> dict[str, Any]:
    conn = queue.connection
    done_among = functools.partial(_done_among, conn)
    log(f"[rq] submitting {args.jobs} jobs")
    ids: list[str] = []
    first = time.time()
    for number in range(args.jobs):
        if number % 100 == 0:
            deadline.check()
        ids.append(_enqueue(queue).id)
    submitted = time.time()
    observed = drain(ids, done_among, deadline, args.drain_poll_ms / 1000, workers)
    last = 0.0
    for offset in range(0, len(ids), 500):
        for job in Job.fetch_many(ids[offset:offset + 500], connection=conn):
            if job is None or job.ended_at is None:
                raise BenchError(f"a drained job has no end time: {job!r}")
            last = max(last, wall_from_iso(job.ended_at))
    return report_throughput("rq", VERSION, args, first, last, observed, submitted, settings)


def _settings(args: argparse.Namespace, conn: redis.Redis) -> dict[str, Any]:
    settings = common_settings(args)
    settings.update({
        "workers": "2 x `rq worker --worker-class rq.worker.SimpleWorker --logging_level WARNING"
                   " --disable-job-desc-logging`",
        "executing_processes": 2,
        "redis_db": conn.connection_pool.connection_kwargs.get("db"),
        "redis_server": conn.info("server")["redis_version"],
        "redis_py": md.version("redis"),
        "result_ttl_s": RESULT_TTL, "serializer": "pickle (RQ's default)",
    })
    if args.mode == "roundtrip":
        settings["observed_by"] = (f"client polling job.get_status() (one HGET) with a "
                                   f"{args.poll_ms:g} ms sleep; 'started' = RUNNING, "
                                   "'finished' = COMPLETED")
    else:
        settings["submit_call"] = "queue.enqueue(noop, result_ttl=86400)"
        settings["completed_at"] = "job.ended_at recorded by the worker"
    return settings
