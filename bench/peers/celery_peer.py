"""Celery 5 beside genai-jobs: Redis broker and Redis result backend, a no-op task whose result
is kept, 2 worker processes.

    bench/.venv-peers/bin/python bench/peers/celery_peer.py --mode throughput --jobs 5000
    bench/.venv-peers/bin/python bench/peers/celery_peer.py --mode roundtrip --jobs 300

Prints one JSON object on stdout (see bench/peers/README.md). Uses only its own Redis
database (default db 5: FLUSHDB before and after the run; never another db).

Worker layouts (--layout), all "2 processes that execute tasks":
  prefork2    one `celery worker --pool prefork --concurrency 2`: the default. Celery's own
              meaning of "2 worker processes" (concurrency = the number of child processes)
              and what a Celery user deploys. A third process, the parent, talks to Redis and
              hands tasks to the two children over pipes.
  prefork1x2  two `celery worker --pool prefork --concurrency 1` (2 parents + 2 children).
  solo2       two `celery worker --pool solo`: exactly 2 processes, each taking tasks from
              Redis and running them itself, like RQ's SimpleWorker and Procrastinate.

This file is also the Celery app the workers load (`celery -A celery_peer`).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Run as the module `celery_peer`, never as `__main__`: the workers import this
    # file by that name, so the client and the workers share one app and task.
    import celery_peer

    sys.exit(celery_peer.main())

import argparse
import importlib.metadata as md
import os
import time
import uuid
from typing import Any

import celery
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
    wall_from_iso,
)
from celery import Celery, states

REDIS_URL = os.environ.get("PEERS_CELERY_REDIS_URL", "redis://127.0.0.1:6379/5")
TRACK_STARTED = os.environ.get("PEERS_CELERY_TRACK_STARTED", "1") == "1"

app = Celery("celery_peer", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_track_started=TRACK_STARTED,  # a STARTED state in the backend: the peer's "RUNNING"
    task_ignore_result=False,  # results kept (result_expires: Celery's default, 1 day)
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Everything else is Celery's default: json serializer, acks early, prefetch multiplier 4.
)


@app.task(name="peers.noop")
def noop() -> dict[str, bool]:
    return {"ok": True}


LAYOUTS = {  # name -> (worker commands started, pool, concurrency of each)
    "prefork2": (1, "prefork", 2),
    "prefork1x2": (2, "prefork", 1),
    "solo2": (2, "solo", 1),
}


def _extra_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="prefork2",
                   help="worker processes (default prefork2: one worker, 2 prefork children)")
    p.add_argument("--no-track-started", action="store_true",
                   help="throughput only: task_track_started off (one backend write less per "
                        "task; no RUNNING state, unlike genai-jobs)")


def main(argv: list[str] | None = None) -> int:
    """The Redis URL comes from PEERS_CELERY_REDIS_URL only, so this process's app and the
    workers' agree; it must name a dedicated db index other than 0."""
    args = parse_args("celery", _extra_args, argv)
    if args.no_track_started and args.mode == "roundtrip":
        raise SystemExit("--no-track-started leaves nothing to observe as RUNNING")
    app.conf.task_track_started = not args.no_track_started
    exit_on_signals()
    try:
        lock = hold_run_lock(args.lock_wait)  # noqa: F841 - held until this process exits
    except BenchError as exc:
        log(f"[celery] FAILED: {exc}")
        return 1
    client = redis.Redis.from_url(REDIS_URL)
    if not client.connection_pool.connection_kwargs.get("db", 0):
        raise SystemExit("refusing to FLUSHDB Redis db 0: PEERS_CELERY_REDIS_URL must name a "
                         "dedicated db index")
    workers = Workers("celery", keep_logs=args.keep_logs)
    try:
        client.flushdb()
        _start_workers(workers, args)
        deadline = Deadline(args.timeout, f"celery {args.mode} run")
        _wait_ready(workers, LAYOUTS[args.layout][0], deadline)
        log(f"[celery] workers ready; {args.warmup} warm-up jobs")
        if args.no_track_started:
            _throughput_jobs(min(args.warmup, 1000), deadline, workers, args)
        elif args.warmup:
            roundtrip_loop(args.warmup, lambda: _one_roundtrip(args.job_timeout), 0.0,
                           deadline, workers)
        settings = _settings(args, client)
        if args.mode == "throughput":
            result = _throughput(args, deadline, workers, settings)
        else:
            running, completed = roundtrip_loop(
                args.jobs, lambda: _one_roundtrip(args.job_timeout), args.pause_ms / 1000,
                deadline, workers)
            result = report_roundtrip("celery", celery.__version__, args, running, completed,
                                      settings)
        workers.check_alive()
    except BenchError as exc:
        log(f"[celery] FAILED: {exc}")
        return 1
    finally:
        workers.stop()
        client.flushdb()
        client.close()
    emit(result)
    return 0


def _start_workers(workers: Workers, args: argparse.Namespace) -> None:
    processes, pool, concurrency = LAYOUTS[args.layout]
    env = {"PEERS_CELERY_REDIS_URL": REDIS_URL,
           "PEERS_CELERY_TRACK_STARTED": "0" if args.no_track_started else "1"}
    for index in range(1, processes + 1):
        workers.start([sys.executable, "-m", "celery", "-A", "celery_peer", "worker",
                       "--pool", pool, "--concurrency", str(concurrency),
                       "--hostname", f"peer{index}@%h", "--loglevel", "WARNING",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"],
                      env=env)


def _wait_ready(workers: Workers, nodes: int, deadline: Deadline) -> None:
    """Every worker node answers a broadcast ping (Celery's own readiness check)."""
    while deadline.left() > 0:
        workers.check_alive()
        replies = app.control.ping(timeout=0.5) or []
        if len(replies) >= nodes:
            return
    raise BenchError("celery workers did not answer ping")


def _one_roundtrip(timeout: float) -> tuple[float, float]:
    """Submit one job; the times from just before the submit to the backend's STARTED and
    SUCCESS messages. The client subscribes (before the clock starts) to the Redis channel
    on which the result backend publishes every state it stores -- the mechanism
    AsyncResult.get() itself waits on with the Redis backend -- so nothing is polled."""
    backend: Any = app.backend
    task_id = str(uuid.uuid4())
    pubsub = backend.client.pubsub()
    try:
        pubsub.subscribe(backend.get_key_for_task(task_id))
        confirm = pubsub.get_message(timeout=5)  # the subscription is live before the submit
        if not confirm or confirm["type"] != "subscribe":
            raise BenchError(f"no subscription confirmation: {confirm!r}")
        start = time.perf_counter()
        noop.apply_async(task_id=task_id)
        running = None
        end = start + timeout
        while True:
            check_stop()
            left = end - time.perf_counter()
            if left <= 0:
                raise BenchError(f"celery job {task_id} not done within {timeout} s")
            message = pubsub.get_message(timeout=left)
            if message is None or message["type"] != "message":
                continue
            now = time.perf_counter()
            status = backend.decode_result(message["data"])["status"]
            if status == states.STARTED and running is None:
                running = now
            elif status == states.SUCCESS:
                if running is None:  # never seen: count it as running at completion
                    running = now
                return (running - start) * 1000, (now - start) * 1000
            elif status in states.READY_STATES:
                raise BenchError(f"celery job {task_id} ended {status}")
    finally:
        pubsub.close()


def _metas(ids: list[str]) -> list[dict[str, Any] | None]:
    """The result-backend records of `ids` (one MGET), None where not stored yet."""
    backend: Any = app.backend
    raw = backend.client.mget([backend.get_key_for_task(i) for i in ids])
    return [backend.decode_result(v) if v is not None else None for v in raw]


def _done_among(batch: list[str]) -> set[str]:
    done = set()
    for task_id, meta in zip(batch, _metas(list(batch)), strict=True):
        if meta is None:
            continue
        if meta["status"] == states.SUCCESS:
            done.add(task_id)
        elif meta["status"] in states.READY_STATES:
            raise BenchError(f"celery job {task_id} ended {meta['status']}")
    return done


def _throughput_jobs(count: int, deadline: Deadline, workers: Workers,
                     args: argparse.Namespace) -> tuple[list[str], float, float, float]:
    """Submit `count` jobs one `delay()` at a time and wait for all: the ids, the wall times
    of the first submit, of the last submit's return and of the client seeing the last done."""
    ids: list[str] = []
    first = time.time()
    for number in range(count):
        if number % 100 == 0:
            deadline.check()
        ids.append(noop.delay().id)
    submitted = time.time()
    observed = drain(ids, _done_among, deadline, args.drain_poll_ms / 1000, workers)
    return ids, first, submitted, observed


def _throughput(args: argparse.Namespace, deadline: Deadline, workers: Workers,
                settings: dict[str, Any]) -> dict[str, Any]:
    log(f"[celery] submitting {args.jobs} jobs")
    ids, first, submitted, observed = _throughput_jobs(args.jobs, deadline, workers, args)
    last = 0.0
    for offset in range(0, len(ids), 1000):
        for meta in _metas(ids[offset:offset + 1000]):
            if meta is None or meta["status"] != states.SUCCESS:
                raise BenchError(f"a drained job has no SUCCESS record: {meta!r}")
            last = max(last, wall_from_iso(meta["date_done"]))
    return report_throughput("celery", celery.__version__, args, first, last, observed,
                             submitted, settings)


def _settings(args: argparse.Namespace, client: redis.Redis) -> dict[str, Any]:
    processes, pool, concurrency = LAYOUTS[args.layout]
    settings = common_settings(args)
    settings.update({
        "layout": args.layout,
        "workers": f"{processes} x `celery worker --pool {pool} --concurrency {concurrency}"
                   " --without-gossip --without-mingle --without-heartbeat --loglevel WARNING`",
        "executing_processes": processes * concurrency,
        "broker": "redis", "result_backend": "redis",
        "redis_db": client.connection_pool.connection_kwargs.get("db"),
        "redis_server": client.info("server")["redis_version"],
        "kombu": md.version("kombu"), "redis_py": md.version("redis"),
        "task_track_started": app.conf.task_track_started,
        "results_kept": "yes (result_expires 1 day, the default)",
        "acks_late": bool(app.conf.task_acks_late),
        "prefetch_multiplier": app.conf.worker_prefetch_multiplier,
        "serializer": app.conf.task_serializer,
    })
    if args.mode == "roundtrip":
        settings["observed_by"] = ("client subscribed to the result backend's Redis pub/sub "
                                   "channel for the task (STARTED and SUCCESS messages); "
                                   "no polling")
    else:
        settings["submit_call"] = "noop.delay()"
        settings["completed_at"] = "date_done in the task's result-backend record"
    return settings
