"""Runs the peer queues of bench/peers/ (Celery, RQ, Procrastinate) beside our own measurements.

Each peer is a script `bench/peers/<name>_peer.py`, run by the peers' own
virtual environment (bench/.venv-peers, never the project's) as

    bench/.venv-peers/bin/python bench/peers/<name>_peer.py --mode throughput|roundtrip --jobs N

which prints one JSON object as its last line of standard output:
throughput `{"system", "version", "jobs", "seconds", "jobs_per_second", "settings"}`,
round trip `{"system", "version", "jobs", "running_ms": [...], "completed_ms": [...],
"settings"}`. A peer that fails or times out is recorded as failed; the run goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import BENCH, REPO, Run

PEERS = ("celery", "rq", "procrastinate")
PEERS_DIR = BENCH / "peers"
VENV_PYTHON = BENCH / ".venv-peers" / "bin" / "python"
SETUP_SCRIPT = PEERS_DIR / "setup_venv.sh"
SETUP_TIMEOUT_SECONDS = 900


def prepare(ctx: Run) -> dict[str, Any]:
    """Make the peers' venv if it is missing; say which peers can run."""
    if not PEERS_DIR.is_dir():
        ctx.peers = False
        return {"available": [], "reason": "bench/peers/ does not exist"}
    if not VENV_PYTHON.exists() and SETUP_SCRIPT.exists():
        ctx.log("making the peers' virtual environment (bench/peers/setup_venv.sh)")
        done = subprocess.run(["bash", str(SETUP_SCRIPT)], cwd=REPO, capture_output=True,
                              text=True, timeout=SETUP_TIMEOUT_SECONDS, check=False)
        if done.returncode != 0:
            ctx.peers = False
            return {"available": [], "reason": "setup_venv.sh failed: "
                    + (done.stderr or done.stdout).strip()[-500:]}
    if not VENV_PYTHON.exists():
        ctx.peers = False
        return {"available": [], "reason": f"{VENV_PYTHON.relative_to(REPO)} is missing"}
    available = [name for name in PEERS if (PEERS_DIR / f"{name}_peer.py").exists()]
    if not available:
        ctx.peers = False
    return {"available": available,
            "missing": [name for name in PEERS if name not in available]}


def available(ctx: Run) -> list[str]:
    if not ctx.peers:
        return []
    return [name for name in PEERS if (PEERS_DIR / f"{name}_peer.py").exists()]


def run_peer(name: str, mode: str, jobs: int, timeout: float) -> dict[str, Any]:
    """One run of one peer; its JSON, or {"failed": why}."""
    argv = [str(VENV_PYTHON), str(PEERS_DIR / f"{name}_peer.py"), "--mode", mode,
            "--jobs", str(jobs)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_JOBS_")}
    env["PYTHONPATH"] = str(REPO)
    try:
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"system": name, "failed": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"system": name, "failed": f"exit {done.returncode}: " + " | ".join(tail)}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"system": name, "failed": f"unreadable output: {exc}"}
    result.setdefault("system", name)
    return result


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))
