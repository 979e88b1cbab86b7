"""What the three peer benchmarks share: the command line, their worker processes, bounded
waits and the one JSON object each prints.

Run only with the peers' virtual environment (bench/.venv-peers, made by setup_venv.sh);
nothing here imports genai_jobs, and genai_jobs never imports this.

Everything a run starts is a child of the run, in its own process group, and is stopped
(SIGTERM, then SIGKILL after a grace period) in a `finally`, on SIGINT/SIGTERM and at exit.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKERS = 2  # the "2 worker processes"


class BenchError(RuntimeError):
    """A run that cannot give a fair figure: a worker died, a job failed, a wait timed out."""


def parse_args(system: str, extra: Callable[[argparse.ArgumentParser], None] | None = None,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=f"{system}_peer.py",
        description=f"{system} beside genai-jobs: throughput or one-at-a-time round trip; "
                    "prints one JSON object on stdout, progress on stderr.")
    p.add_argument("--mode", choices=("throughput", "roundtrip"), required=True)
    p.add_argument("--jobs", type=int, required=True, help="jobs measured (not counting warm-up)")
    p.add_argument("--warmup", type=int, default=20,
                   help="round trips run and discarded once the workers are ready (default 20)")
    p.add_argument("--pause-ms", type=float, default=10.0,
                   help="roundtrip: idle time between one job's completion and the next submit "
                        "(default 10 ms, so every job meets idle workers)")
    p.add_argument("--poll-ms", type=float, default=1.0,
                   help="client polling sleep where the client polls (default 1 ms)")
    p.add_argument("--drain-poll-ms", type=float, default=5.0,
                   help="throughput: sleep between the client's checks for the last completion "
                        "(default 5 ms; the figure uses the peer's own completion times)")
    p.add_argument("--job-timeout", type=float, default=10.0,
                   help="roundtrip: give up on one job after this many seconds (default 10)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up on the whole run after this many seconds (default 900)")
    p.add_argument("--lock-wait", type=float, default=600.0,
                   help="wait this many seconds for another peer run on this machine to "
                        "finish before giving up (default 600)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the workers' log directory (printed on stderr)")
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    args.loadavg_before = round(os.getloadavg()[0], 2)
    if not 1 <= args.jobs <= 1_000_000:
        p.error("--jobs must be between 1 and 1,000,000")
    if args.warmup < 0 or args.warmup > 10_000:
        p.error("--warmup must be between 0 and 10,000")
    return args


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """The one JSON object on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class Deadline:
    def __init__(self, seconds: float, what: str) -> None:
        self.end = time.monotonic() + seconds
        self.what = what

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        check_stop()
        if time.monotonic() > self.end:
            raise BenchError(f"timed out: {self.what}")


def wall_from_iso(value: str | datetime) -> float:
    """A peer's recorded time (ISO text or datetime, naive meaning UTC) as a Unix timestamp."""
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


class Workers:
    """The worker processes of one run: started, watched, and always stopped."""

    def __init__(self, name: str, keep_logs: bool = False) -> None:
        self.name = name
        self.keep_logs = keep_logs
        self.logdir = Path(tempfile.mkdtemp(prefix=f"peers-{name}-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        atexit.register(self.stop)

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        index = len(self.procs) + 1
        out = open(self.logdir / f"worker-{index}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(out)
        full_env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        proc = subprocess.Popen(argv, cwd=HERE, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,  # own process group: stopped whole
                                preexec_fn=_die_with_parent(os.getpid()))
        self.procs.append(proc)
        log(f"[{self.name}] started worker {index} pid {proc.pid}: {' '.join(argv)}")

    def check_alive(self) -> None:
        for index, proc in enumerate(self.procs, start=1):
            if proc.poll() is not None:
                raise BenchError(f"{self.name} worker {index} exited with {proc.returncode}; "
                                 f"log:\n{self.tail(index)}")

    def tail(self, index: int, lines: int = 30) -> str:
        try:
            text = (self.logdir / f"worker-{index}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each worker's process group, wait, then SIGKILL what is left."""
        for proc in self.procs:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"[{self.name}] worker pid {proc.pid} ignored SIGTERM; killing it")
        for proc in self.procs:
            # The group too: prefork children or threads' helpers outliving their parent.
            _signal_group(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(timeout=5)
        self.procs.clear()
        self._close_logs()

    def _close_logs(self) -> None:
        if not self._logs:  # already closed: stop() runs in `finally` and again at exit
            return
        for out in self._logs:
            out.close()
        self._logs.clear()
        if self.keep_logs:
            log(f"[{self.name}] worker logs kept in {self.logdir}")
            return
        for path in self.logdir.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.logdir.rmdir()


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For the worker, before exec: SIGTERM when this run's process dies, however it dies
    (a SIGKILL from a harness's time-out included), so no worker outlives its run."""

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
        if os.getppid() != parent:  # the run died before the line above
            os._exit(1)

    return arm


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_STOP: list[int] = []  # the signals that asked this run to stop


def exit_on_signals() -> None:
    """SIGTERM/SIGHUP/SIGINT become SystemExit, so every `finally` (stop workers, drop the
    database, flush the Redis db) runs when the run is stopped from outside. The signal is
    also remembered and every bounded loop checks it (`check_stop`): an exception raised
    where Python ignores it (in a `__del__`, as Celery's AsyncResult has) is not lost."""

    def handler(signum: int, _frame: Any) -> None:
        _STOP.append(signum)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


def check_stop() -> None:
    if _STOP:
        raise SystemExit(128 + _STOP[0])


LOCK_PATH = Path(tempfile.gettempdir()) / "genai-jobs-bench-peers.lock"


def hold_run_lock(seconds: float) -> Any:
    """One peer run at a time on this machine: they share Redis db indexes and the database
    name, and two at once would measure each other. Waits up to `seconds` for a run in
    progress to finish; the lock goes with this process (kept open, released at exit)."""
    handle = open(LOCK_PATH, "a+")  # noqa: SIM115 - held for the life of the run
    deadline = Deadline(seconds, f"another peer run holding {LOCK_PATH}")
    said = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if not said:
                log(f"waiting (up to {seconds:.0f} s) for another peer run to finish")
                said = True
        try:
            deadline.check()
        except BenchError:
            handle.close()
            raise
        time.sleep(0.5)


def wait_until(predicate: Callable[[], bool], seconds: float, what: str,
               interval: float = 0.05, workers: Workers | None = None) -> None:
    deadline = Deadline(seconds, what)
    while True:
        if workers is not None:
            workers.check_alive()
        if predicate():
            return
        deadline.check()
        time.sleep(interval)


def drain(ids: Sequence[Any], done_among: Callable[[Sequence[Any]], set[Any]],
          deadline: Deadline, interval: float, workers: Workers, chunk: int = 200) -> float:
    """Wait until every job in `ids` is finished, cheaply: check a window of the next `chunk`
    ids in submission order (the peers run roughly FIFO), move past the finished prefix, sleep
    `interval`, repeat. Returns the wall time (time.time()) when the last one was seen done.

    `done_among(batch)` returns the ids of `batch` that are finished and raises BenchError for
    a failed one."""
    position = 0
    checks = 0
    while position < len(ids):
        batch = ids[position:position + chunk]
        finished = done_among(batch)
        checks += 1
        for job_id in batch:
            if job_id not in finished:
                break
            position += 1
        if position >= len(ids):
            break
        if checks % 200 == 0:
            workers.check_alive()
        deadline.check()
        time.sleep(interval)
    return time.time()


def roundtrip_loop(jobs: int, one: Callable[[], tuple[float, float]], pause: float,
                   deadline: Deadline, workers: Workers) -> tuple[list[float], list[float]]:
    """Run `one()` `jobs` times with `pause` seconds of idle between: each returns
    (submit->RUNNING ms, submit->COMPLETED ms)."""
    running: list[float] = []
    completed: list[float] = []
    for number in range(jobs):
        deadline.check()
        if number % 50 == 0:
            workers.check_alive()
        r, c = one()
        running.append(round(r, 4))
        completed.append(round(c, 4))
        time.sleep(pause)
    return running, completed


def summary(samples: Sequence[float]) -> str:
    """p50/p90/p99 for the human on stderr (the JSON carries the raw samples)."""
    if not samples:
        return "-"
    ordered = sorted(samples)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    return f"p50 {pct(50):.2f} p90 {pct(90):.2f} p99 {pct(99):.2f} ms"


def report_throughput(system: str, version: str, args: argparse.Namespace, first_submit: float,
                      last_completed: float, observed: float, submitted: float,
                      settings: dict[str, Any]) -> dict[str, Any]:
    """Seconds run from the client's clock just before the first submit to the peer's own
    recorded completion time of the last job (same machine, same wall clock)."""
    jobs = args.jobs
    seconds = last_completed - first_submit
    if seconds <= 0:
        raise BenchError(f"non-positive duration {seconds}: clocks disagree")
    result = {
        "system": system,
        "version": version,
        "jobs": jobs,
        "seconds": round(seconds, 6),
        "jobs_per_second": round(jobs / seconds, 3),
        "settings": settings,
        "details": {
            "loadavg_1min_before": args.loadavg_before,
            "loadavg_1min_after": round(os.getloadavg()[0], 2),
            "observed_seconds": round(observed - first_submit, 6),
            "submit_seconds": round(submitted - first_submit, 6),
            "submit_jobs_per_second": round(jobs / (submitted - first_submit), 3),
        },
    }
    log(f"[{system}] {jobs} jobs in {seconds:.3f} s = {jobs / seconds:.1f} jobs/s "
        f"(client saw the last one at {observed - first_submit:.3f} s; "
        f"submitting took {submitted - first_submit:.3f} s)")
    return result


def report_roundtrip(system: str, version: str, args: argparse.Namespace, running: list[float],
                     completed: list[float], settings: dict[str, Any],
                     details: dict[str, Any] | None = None) -> dict[str, Any]:
    log(f"[{system}] submit->RUNNING   {summary(running)}")
    log(f"[{system}] submit->COMPLETED {summary(completed)}")
    return {"system": system, "version": version, "jobs": len(completed),
            "running_ms": running, "completed_ms": completed, "settings": settings,
            "details": {"loadavg_1min_before": args.loadavg_before,
                        "loadavg_1min_after": round(os.getloadavg()[0], 2), **(details or {})}}


def common_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "worker_processes": WORKERS,
        "task": "no-op returning {'ok': True}",
        "warmup_jobs": args.warmup,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if args.mode == "roundtrip":
        settings["pause_between_jobs_ms"] = args.pause_ms
    else:
        settings["submit"] = "one call per job, sequential, from one client process"
        settings["seconds_measured"] = ("client clock just before the first submit -> the "
                                        "peer's own recorded completion time of the last job")
        settings["drain_check_interval_ms"] = args.drain_poll_ms
    return settings
