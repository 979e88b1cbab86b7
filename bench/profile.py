"""Profile a genai-jobs process under a benchmark's load with py-spy; print where time goes.

    .venv/bin/python bench/profile.py status --backend postgres     # status GET under wrk
    .venv/bin/python bench/profile.py submit --backend sqlite       # HTTP submissions
    .venv/bin/python bench/profile.py worker --backend sqlite       # a worker draining jobs

py-spy (`.venv/bin/pip install py-spy`; it needs ptrace, which root has) samples
the process for --seconds while the load runs and writes, in --out:

- `<what>-<backend>.raw`: py-spy's collapsed stacks (speedscope or flamegraph.pl
  draw them);
- `<what>-<backend>.txt`: the top functions by own time and by inclusive time,
  also printed here.

Loopback only; the load is bounded by --seconds (wrk) or a job count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BENCH,
    BIN,
    NOOP_APP,
    Service,
    noop_job,
    opened,
    run_wrk,
    scratch_store,
)
from bench.throughput import submit_http

PY_SPY = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy") or "py-spy"


def top(collapsed: Path, count: int = 25) -> str:
    """Own and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(count)]
    lines += ["", "inclusive time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(count)]
    return "\n".join(lines)


def record(pid: int, seconds: int, out: Path, name: str) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--duration", str(seconds),
                             "--rate", "250", "--format", "raw", "--output",
                             str(out / f"{name}.raw"), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(spy: subprocess.Popen[bytes], out: Path, name: str) -> None:
    _, err = spy.communicate(timeout=120)
    raw = out / f"{name}.raw"
    if not raw.exists():
        sys.exit(f"py-spy wrote nothing: {err.decode(errors='replace')[-800:]}")
    summary = top(raw)
    (out / f"{name}.txt").write_text(summary + "\n")
    print(summary)
    print(f"\nwrote {out / (name + '.txt')} and the collapsed stacks {raw} "
          "(speedscope.app or flamegraph.pl draw them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("status", "submit", "worker"))
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=3000, help="submit/worker: jobs to send")
    parser.add_argument("--submitters", type=int, default=16,
                        help="submit: concurrent submitting coroutines (1: one at a time)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "profiles")
    args = parser.parse_args()
    name = f"{args.what}-{args.backend}"
    folder = Path(tempfile.mkdtemp(prefix="genai-jobs-profile-"))
    try:
        with scratch_store(args.backend, folder) as scratch:
            if args.what == "status":
                job_id = asyncio.run(_one(scratch.url))
                with Service.genai_jobs("serve", scratch.url, folder, "--workers", "0") as api:
                    url = f"{api.base}/api/v2/genai/status/{job_id}/"
                    run_wrk(url, scratch.admin_token, 1)
                    spy = record(api.pid, args.seconds, args.out, name)
                    time.sleep(0.5)
                    run_wrk(url, scratch.admin_token, args.seconds)
                    finish(spy, args.out, name)
            elif args.what == "submit":
                with Service.genai_jobs("serve", scratch.url, folder, "--workers", "0",
                                        "--app", NOOP_APP) as api:
                    spy = record(api.pid, args.seconds, args.out, name)
                    time.sleep(0.5)
                    asyncio.run(_bounded(submit_http(api.base, scratch.admin_token, args.jobs,
                                                     args.submitters),
                                         args.seconds))
                    finish(spy, args.out, name)
            else:
                asyncio.run(_fill(scratch.url, args.jobs))
                with Service.genai_jobs("worker", scratch.url, folder, "--app",
                                        NOOP_APP) as worker:
                    spy = record(worker.pid, args.seconds, args.out, name)
                    finish(spy, args.out, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _one(url: str) -> str:
    async with opened(url) as store:
        outcome = await store.submit(noop_job(job_type="diagnostics.sleep",
                                              payload={"seconds": 3600.0}))
        return str(outcome.job.id)


async def _fill(url: str, jobs: int) -> None:
    async with opened(url) as store:
        for _ in range(jobs):
            await store.submit(noop_job())


async def _bounded(work: object, seconds: int) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds + 5):
            await work  # type: ignore[misc]


if __name__ == "__main__":
    main()
