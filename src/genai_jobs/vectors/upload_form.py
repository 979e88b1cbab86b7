"""An upload's form, parsed off the event loop.

Starlette parses a multipart body on the event loop as it arrives, and hands
each slice of the file to a thread to be written: ten 160 MB uploads at once
kept the loop busy enough to make other clients' status polls wait (p99 5x
quiet, bench/hostile.py uploads). Here the loop only appends the body to a
temporary file as it arrives; the same parser (Starlette's, so the same limits,
charsets and error messages) then reads that file in a thread, with an event
loop of its own. Other content types go to Starlette as before.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncGenerator
from typing import IO

from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

# How much of the spooled body the parser is given at a time.
PARSE_CHUNK_BYTES = 1 << 20


async def read_form(request: Request, *, max_files: int, max_fields: int,
                    file_field: str) -> tuple[FormData, bytes | None]:
    """The form, and the content of its file `file_field` (None without one).

    A malformed multipart body is an HTTPException 400 whose detail is the parser's,
    as `request.form()` raises it; errors while receiving the body pass through.
    """
    content_type, _ = parse_options_header(request.headers.get("Content-Type"))
    if content_type != b"multipart/form-data":
        form = await request.form(max_files=max_files, max_fields=max_fields)
        try:
            upload = form.get(file_field)
            return form, await upload.read() if isinstance(upload, UploadFile) else None
        finally:
            await form.close()
    with tempfile.TemporaryFile() as body:
        async for chunk in request.stream():
            body.write(chunk)  # to the page cache: no thread needed
        try:
            return await asyncio.to_thread(_parse_spooled, request, body, max_files,
                                           max_fields, file_field)
        except MultiPartException as exc:
            raise HTTPException(status_code=400, detail=exc.message) from exc


def _parse_spooled(request: Request, body: IO[bytes], max_files: int, max_fields: int,
                   file_field: str) -> tuple[FormData, bytes | None]:
    body.seek(0)

    async def chunks() -> AsyncGenerator[bytes, None]:
        while chunk := body.read(PARSE_CHUNK_BYTES):
            yield chunk

    async def parse() -> tuple[FormData, bytes | None]:
        form = await MultiPartParser(request.headers, chunks(), max_files=max_files,
                                     max_fields=max_fields).parse()
        try:
            upload = form.get(file_field)
            return form, await upload.read() if isinstance(upload, UploadFile) else None
        finally:
            await form.close()

    return asyncio.run(parse())
