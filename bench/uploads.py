"""DataRobot's `Dataset.create_from_file` beside the upload alone, per size and store.

    .venv/bin/python bench/run.py --only uploads --no-peers [--quick]

Section 8 of bench/run.py (`run(ctx)`). The target: uploading a dataset of at most
50 MB with the SDK takes no more than the upload itself plus 0.5 s, because the server
ingests the file inside the upload's request, so the SDK's first status poll finds it
done and the SDK's fixed 5-second sleep between polls never happens.

For each size, one zip of plain-text files of up to 1 MB each, stored uncompressed so
that the zip's bytes are the bytes on the wire. Each round runs three calls, in an
order rotated from round to round (the machine's load drifts):

- `sdk`: `dr.Dataset.create_from_file(file_path=zip)` against `genai-jobs serve
  --workers 0`, end to end: the upload, its status poll (303 to the dataset), the
  dataset's GET;
- `floor`: the upload alone: the same SDK client's `build_request_with_file` (the
  `requests_toolbelt.MultipartEncoder` the SDK uploads with, on the same requests
  session) posting the same file to a Starlette app on uvicorn, configured as `serve`
  configures uvicorn (bench/floors.py), which reads the whole form and answers 202;
- `ingest`: that same POST to the server's `fromFile/`: the upload and the ingest,
  without the SDK's poll and GET.

Every dataset made is deleted after its call (untimed). The SDK runs in this process
with HOME in a temporary folder and no DATAROBOT_* or proxy variables; the environment
is restored afterwards. The floor server is this module too:

    python -m bench.uploads --floor --port N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import math
import os
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import harness

if TYPE_CHECKING:
    from bench.harness import Run
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from tests.support import Server

SIZES = (1_000_000, 10_000_000, 50_000_000)  # bytes of the zip, on the wire
QUICK_SIZES = (1_000_000, 10_000_000)
SMOKE_SIZES = (100_000,)
MEMBER_BYTES = 1_000_000  # each text file in a zip
ZIP_MEMBER_OVERHEAD = 30 + 46  # a stored member's local header and central entry, name aside
ZIP_END_BYTES = 22  # the end-of-central-directory record
LIMIT_SECONDS = 0.5  # the target: the SDK's upload within the upload alone + 0.5 s
SDK_SLEEP_SECONDS = 5.0  # the SDK's fixed sleep between two status polls
MAX_WAIT_SECONDS = 60  # the SDK's wait for the status route: bounds each SDK call
READ_TIMEOUT_SECONDS = 120  # for the server's answer to an upload
CALLS = ("sdk", "floor", "ingest")
FLOOR_PATH = "/upload/"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
TENANT = "uploads"


# -- as a section of bench/run.py -----------------------------------------------------


def run(ctx: Run) -> dict[str, Any]:
    """Every size on every store of the run, beside one floor server."""
    if importlib.util.find_spec("datarobot") is None:
        return {"skipped": "needs the datarobot package (the dev extra)"}
    settings = _settings(ctx)
    outcome: dict[str, Any] = {"settings": settings, "backends": {}}
    with tempfile.TemporaryDirectory(dir=ctx.folder) as tmp:
        folder = Path(tmp)
        zips = {size: make_zip(folder, size) for size in settings["sizes"]}
        with floor_server(folder) as floor_url:
            for kind in ctx.backends:
                outcome["backends"][kind] = _backend_or_why(ctx, kind, zips, floor_url, folder)
    return outcome


def _settings(ctx: Run) -> dict[str, Any]:
    return {"sizes": list(ctx.size(SIZES, QUICK_SIZES, smoke=SMOKE_SIZES)),
            "member_bytes": MEMBER_BYTES, "rounds": ctx.rounds,
            "limit_seconds": LIMIT_SECONDS, "max_wait_seconds": MAX_WAIT_SECONDS,
            "datarobot": importlib.metadata.version("datarobot"),
            "requests_toolbelt": importlib.metadata.version("requests-toolbelt"),
            "requests": importlib.metadata.version("requests")}


def _backend_or_why(ctx: Run, kind: str, zips: Mapping[int, Path], floor_url: str,
                    folder: Path) -> dict[str, Any]:
    """One store's figures, or why there are none (the other store still runs)."""
    if ctx.out_of_time(f"uploads on {kind}"):
        return {"skipped": "time budget spent"}
    try:
        return measure_backend(ctx, kind, zips, floor_url, folder)
    except Exception as exc:  # recorded; the other store still runs
        ctx.log(f"  {kind}: FAILED: {type(exc).__name__}: {exc}")
        return {"failed": f"{type(exc).__name__}: {exc}"}


def measure_backend(ctx: Run, kind: str, zips: Mapping[int, Path], floor_url: str,
                    folder: Path) -> dict[str, Any]:
    """A fresh store and `serve --workers 0`; one unrecorded call of each kind, then the
    rounds of every size."""
    with harness.scratch_store(kind, folder) as scratch, \
            _server(folder, scratch) as server:
        token = server.make_token(TENANT)
        with hermetic_sdk(folder / "home"), sdk_client(server.url, token) as client:
            uploader = Uploader(client, floor_url)
            smallest = zips[min(zips)]
            for call in CALLS:
                uploader.timed(call, smallest)
            sizes = {str(size): measure_size(ctx, f"{kind} {_mb(size)}", uploader, path)
                     for size, path in zips.items()}
    return _backend_summary(sizes)


@contextlib.contextmanager
def _server(folder: Path, scratch: harness.Scratch) -> Iterator[Server]:
    from tests.support import start_server

    server = start_server(folder, "--workers", "0", database_url=scratch.url,
                          admin_token=scratch.admin_token)
    try:
        yield server
    finally:
        server.service.terminate()
        server.service.close()


def measure_size(ctx: Run, label: str, uploader: Uploader, path: Path) -> dict[str, Any]:
    """`ctx.rounds` rounds of the three calls, each round starting one call later."""
    seconds: dict[str, list[float]] = {call: [] for call in CALLS}
    polls: list[int] = []
    for round_no in range(ctx.rounds):
        if ctx.out_of_time(f"uploads {label} round {round_no}"):
            break
        shift = round_no % len(CALLS)
        for call in (*CALLS[shift:], *CALLS[:shift]):
            seconds[call].append(uploader.timed(call, path))
        polls.append(uploader.last_status_polls)
        ctx.log(f"  {label} round {round_no}: "
                + ", ".join(f"{call} {seconds[call][-1]:.3f} s" for call in CALLS))
    return _size_summary(seconds, polls, path)


# -- the calls ------------------------------------------------------------------------


class Uploader:
    """The three calls, all through one SDK client (one requests session)."""

    def __init__(self, client: Any, floor_url: str) -> None:
        self.client = client
        self.floor_url = floor_url
        self.sent: list[str] = []  # "METHOD url" of every request the session sends
        self.last_status_polls = 0
        client.hooks["response"].append(self._record)

    def _record(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.sent.append(f"{response.request.method} {response.request.url}")

    def timed(self, call: str, path: Path) -> float:
        """Wall seconds of one call; what it made is deleted afterwards, untimed."""
        seconds: float = getattr(self, call)(path)
        return seconds

    def sdk(self, path: Path) -> float:
        from datarobot.models.dataset import Dataset

        self.sent.clear()
        started = time.perf_counter()
        dataset: Dataset = Dataset.create_from_file(
            file_path=str(path), read_timeout=READ_TIMEOUT_SECONDS, max_wait=MAX_WAIT_SECONDS)
        seconds = time.perf_counter() - started
        self.last_status_polls = sum("/status/" in line for line in self.sent)
        self.client.delete(f"datasets/{dataset.id}/")
        return seconds

    def floor(self, path: Path) -> float:
        seconds, answer = self._post(self.floor_url, path)
        if answer["bytes"] != path.stat().st_size:
            raise RuntimeError(f"the floor read {answer['bytes']} bytes of {path.name}")
        return seconds

    def ingest(self, path: Path) -> float:
        seconds, answer = self._post("datasets/fromFile/", path)
        self.client.delete(f"datasets/{answer['catalogId']}/")
        return seconds

    def _post(self, url: str, path: Path) -> tuple[float, dict[str, Any]]:
        """The SDK's own multipart upload (field `file`), timed to the answer."""
        with path.open("rb") as file:
            started = time.perf_counter()
            response = self.client.build_request_with_file(
                method="post", url=url, fname=path.name, filelike=file,
                read_timeout=READ_TIMEOUT_SECONDS)
            seconds = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:200]}")
        answer: dict[str, Any] = response.json()
        return seconds, answer


@contextlib.contextmanager
def hermetic_sdk(home: Path) -> Iterator[None]:
    """No drconfig.yaml (HOME is `home`), no DATAROBOT_* settings, no proxy in front of
    127.0.0.1; this process's environment is restored afterwards."""
    home.mkdir(exist_ok=True)
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("DATAROBOT_") or name.lower() in PROXY_VARIABLES:
            del os.environ[name]
    os.environ.update(HOME=str(home), NO_PROXY=harness.HOST, no_proxy=harness.HOST)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def sdk_client(url: str, token: str) -> Iterator[Any]:
    """`dr.Client` on our server as the SDK's global client; the previous one restored."""
    from datarobot.client import Client, set_client

    previous = set_client(None)  # type: ignore[arg-type]
    try:
        yield Client(endpoint=f"{url}/api/v2", token=token, max_retries=0)
    finally:
        set_client(previous)  # type: ignore[arg-type]


# -- the files ------------------------------------------------------------------------


def make_zip(folder: Path, size: int) -> Path:
    """A zip of exactly `size` bytes, uncompressed: text files of up to MEMBER_BYTES."""
    count = max(1, math.ceil(size / MEMBER_BYTES))
    names = [f"part-{number:04d}.txt" for number in range(count)]
    payload = size - ZIP_END_BYTES - sum(ZIP_MEMBER_OVERHEAD + 2 * len(n) for n in names)
    path = folder / f"upload-{size}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for number, name in enumerate(names):
            share = payload // count + (1 if number < payload % count else 0)
            archive.writestr(name, _text(number, share))
    return path


def _text(number: int, size: int) -> bytes:
    """`size` bytes of ASCII lines (so valid UTF-8 wherever they are cut)."""
    line = (f"File {number}: plain text to upload, one line after another, "
            "as a document holds it.\n").encode()
    return (line * (size // len(line) + 1))[:size]


def _mb(size: int | str) -> str:
    return f"{int(size) / 1e6:g} MB"


# -- figures --------------------------------------------------------------------------


def _size_summary(seconds: Mapping[str, list[float]], polls: Sequence[int],
                  path: Path) -> dict[str, Any]:
    """Spreads of each call; SDK - floor paired within each round, and best vs best."""
    sdk, floor, ingest = (seconds[call] for call in CALLS)
    paired = [s - f for s, f in zip(sdk, floor, strict=True)]
    with zipfile.ZipFile(path) as archive:
        files = len(archive.namelist())
    summary: dict[str, Any] = {
        "zip_bytes": path.stat().st_size, "files": files,
        "seconds": {call: [round(v, 4) for v in seconds[call]] for call in CALLS},
        **{call: harness.spread(seconds[call]) for call in CALLS},
        "sdk_minus_floor": harness.spread(paired),
        "ingest_minus_floor": harness.spread(i - f for i, f in zip(ingest, floor, strict=True)),
        "best_sdk_minus_best_floor": min(sdk) - min(floor) if paired else float("nan"),
        "status_polls": max(polls, default=0)}
    summary["met"] = bool(paired) and statistics.median(paired) <= LIMIT_SECONDS
    return summary


def _backend_summary(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Met when every size is within the limit, no SDK call took the SDK's sleep, and
    every SDK call polled its status exactly once."""
    every = [v for size in sizes.values() for v in size["seconds"]["sdk"]]
    slowest = max(every, default=float("nan"))
    one_poll = all(size["status_polls"] == 1 for size in sizes.values())
    return {"sizes": sizes, "sdk_max_seconds": slowest,
            "no_sdk_call_over_sleep": bool(every) and slowest < SDK_SLEEP_SECONDS,
            "one_status_poll": one_poll,
            "met": bool(every) and all(size["met"] for size in sizes.values())
            and slowest < SDK_SLEEP_SECONDS and one_poll}


# -- the floor server -----------------------------------------------------------------


@contextlib.contextmanager
def floor_server(folder: Path) -> Iterator[str]:
    """The floor in a child process of its own; yields its upload URL."""
    port = harness.free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.REPO),
                                                      env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "bench.uploads", "--floor", "--port", str(port)]
    with harness.Service(argv, env, folder / f"floor-{port}.log", port) as floor:
        floor.ready()
        yield floor.base + FLOOR_PATH


def floor_app() -> Starlette:
    """Reads the whole multipart form as the upload route does, stores nothing."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route(FLOOR_PATH, _receive, methods=["POST"]),
                             Route("/healthz", healthz)])


async def _receive(request: Request) -> Response:
    from starlette.datastructures import UploadFile
    from starlette.responses import JSONResponse

    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        received = len(await upload.read()) if isinstance(upload, UploadFile) else 0
    finally:
        await form.close()
    return JSONResponse({"bytes": received}, status_code=202)


def main() -> None:
    parser = argparse.ArgumentParser(description="The upload floor of bench/uploads.py.")
    parser.add_argument("--floor", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    from bench.floors import serve

    asyncio.run(serve(floor_app(), args.port))


if __name__ == "__main__":
    main()
