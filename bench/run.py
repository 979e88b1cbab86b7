"""Run the whole benchmark and write BENCHMARKS.md with its plots.

    .venv/bin/python bench/run.py             # the full run: about 35-45 minutes on 2 cores
    .venv/bin/python bench/run.py --quick     # small sizes, one round: about 5 minutes
    .venv/bin/python bench/run.py --only status_get roundtrip --backends sqlite --no-peers

Sections (bench/<name>.py), in this order:

  status_get   Status GET under wrk beside the FastAPI and raw-ASGI floors
  throughput   5,000 no-op jobs through HTTP and the store API, 2 worker processes; peers
  roundtrip    one job at a time, 300 times: submit->RUNNING, submit->COMPLETED; peers
  scale        status lookup at 1 thousand, 100 thousand, 1 million jobs; list page; size
  waiters      1,000 waiting long-polls: memory, CPU, completion-to-answer time
  memory       RSS of an idle API process, an idle worker, `serve` at rest
  vectors      vector databases: build vs raw encode, search at 100,000 chunks (exact,
               HNSW, HTTP), a build's peak memory as it grows (needs the embeddings extra)
  uploads      DataRobot's `Dataset.create_from_file` of 1, 10, 50 MB beside the upload
               alone, on each store (needs the datarobot package, the dev extra)
  hostile      hostile clients and noisy tenants (issue 10): slow sockets, 1,500 long-polls,
               400 big pages, 10 uploads of 160 MB, a flood from one tenant; each against
               a quiet baseline on the same server (bench/hostile.py, also runs alone)

Results go to bench/results/benchmarks.json (after every section, so an
interrupted run keeps what it measured); the report to BENCHMARKS.md and
bench/plots/*.png (bench/hostile.py writes its own part of the report). `--report-only`
renders them again from the JSON.

Peers (Celery, RQ, Procrastinate) run from bench/peers/ in their own virtual
environment, bench/.venv-peers (made by bench/peers/setup_venv.sh when missing).
Everything runs on 127.0.0.1; PostgreSQL is BENCH_PG_ADMIN_URL
(default postgresql://postgres@127.0.0.1:5432/postgres), where scratch
databases are created and dropped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, peers_runner, report

SECTIONS = ("status_get", "throughput", "roundtrip", "scale", "waiters", "memory", "vectors",
            "uploads", "hostile")
RESULTS = harness.BENCH / "results" / "benchmarks.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (the test suite's smoke test); implies --quick")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--backends", nargs="+", choices=harness.BACKENDS,
                        default=list(harness.BACKENDS))
    parser.add_argument("--no-peers", action="store_true", help="skip Celery, RQ, Procrastinate")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 3, quick 1)")
    parser.add_argument("--max-minutes", type=float, default=50.0,
                        help="start no new measurement past this many minutes")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results JSON")
    parser.add_argument("--report", type=Path, default=harness.REPO / "BENCHMARKS.md",
                        help="the Markdown report to write")
    parser.add_argument("--plots", type=Path, default=harness.BENCH / "plots",
                        help="folder for the PNG plots")
    parser.add_argument("--report-only", action="store_true",
                        help="render the report from --results without measuring")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report_only:
        write_report(json.loads(args.results.read_text()), args.report, args.plots)
        print(f"wrote {args.report} and {args.plots}/")
        return 0

    folder = Path(tempfile.mkdtemp(prefix="genai-jobs-bench-"))
    started = time.monotonic()
    ctx = harness.Run(folder=folder, quick=args.quick or args.smoke, smoke=args.smoke,
                      rounds=args.rounds or (1 if args.quick or args.smoke else 3),
                      backends=args.backends, peers=not args.no_peers,
                      deadline=started + args.max_minutes * 60)
    if "postgres" in ctx.backends and (why := harness.postgres_reachable()) is not None:
        print(f"PostgreSQL unreachable ({why}): measuring SQLite only", flush=True)
        ctx.backends = [b for b in ctx.backends if b != "postgres"]
    results: dict[str, Any] = {
        "command": " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
        "environment": harness.environment(),
        "backends": list(ctx.backends),
        "rounds": ctx.rounds,
        "sections": {},
    }
    if ctx.peers:
        results["peers"] = peers_runner.prepare(ctx)
    print(json.dumps(results["environment"]), flush=True)
    failed = []
    try:
        for name in args.only or SECTIONS:
            if ctx.out_of_time(f"section {name}"):
                results["sections"][name] = {"skipped": "time budget spent"}
                continue
            print(f"== {name}", flush=True)
            section_started = time.monotonic()
            try:
                module = importlib.import_module(f"bench.{name}")
                outcome = module.run(ctx)
            except Exception as exc:  # one broken section must not lose the others
                traceback.print_exc()
                outcome = {"failed": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
            outcome["seconds"] = round(time.monotonic() - section_started, 1)
            results["sections"][name] = outcome
            results["total_seconds"] = round(time.monotonic() - started, 1)
            _save(args.results, results)
            print(f"   {name}: {outcome['seconds']:.0f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    _save(args.results, results)
    write_report(results, args.report, args.plots)
    print(f"wrote {args.results}, {args.report} and {args.plots}/ "
          f"in {results['total_seconds'] / 60:.1f} min", flush=True)
    if failed:
        print(f"sections that failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def write_report(results: dict[str, Any], markdown: Path, plots: Path) -> None:
    """bench/report.py's report, with the hostile section's part where it ran."""
    report.write(results, markdown, plots)
    section = results["sections"].get("hostile", {})
    if "cases" in section:
        from bench import hostile

        hostile.splice(markdown, hostile.markdown(section, results.get("command", "bench/run.py"),
                                                  "bench/results/benchmarks.json"))


def _save(path: Path, results: dict[str, Any]) -> None:
    """Indented JSON, with lists of numbers (per-job timings) kept on one line each."""
    text = json.dumps(results, indent=1, default=str)
    text = re.sub(r"\[\s*([-+\d.eE,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
