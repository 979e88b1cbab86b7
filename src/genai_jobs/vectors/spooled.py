"""An uploaded file's bytes left where the multipart parser spooled them.

A large upload is checked and stored a slice at a time from its temporary file,
never gathered into one buffer. Allocating and freeing a 160 MB buffer stalled
the whole process: Python frees it with the GIL held, and the `munmap` takes
~11 ms with the process's memory map locked, so the event loop's page faults
wait too; every status poll answered meanwhile paid for it (bench/hostile.py,
uploads). Slices of a megabyte come from and go back to the heap.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from typing import BinaryIO

# The slice read at a time (a millisecond's work to check or to store).
SLICE_BYTES = 1 << 20


class SpooledFile:
    """A file's bytes in a temporary file of its own (a duplicate of the spooler's
    descriptor: the bytes stay readable after the form is closed, until `close`)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @classmethod
    def of(cls, file: BinaryIO) -> SpooledFile:
        """The bytes of `file` (on disk, as a rolled-over SpooledTemporaryFile is)."""
        fd = os.dup(file.fileno())
        return cls(fd, os.fstat(fd).st_size)

    def __len__(self) -> int:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` (fewer only at the end)."""
        parts = []
        end = min(offset + size, self._size)
        while offset < end:  # bounded: each pass reads something or stops
            part = os.pread(self._fd, end - offset, offset)
            if not part:
                break
            parts.append(part)
            offset += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def slices(self, size: int = SLICE_BYTES) -> Iterator[bytes]:
        for offset in range(0, self._size, size):
            yield self.read(offset, size)

    def opened(self) -> BinaryIO:
        """A file object over the bytes, at their start (zipfile and pypdf read archives
        and PDFs from one); the caller closes it. It shares its position with the
        spooler's file and any other opened at once: one reader at a time."""
        file = os.fdopen(os.dup(self._fd), "rb")
        file.seek(0)
        return file

    def whole(self) -> bytes:
        return self.read(0, self._size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


# What a document's bytes are while an upload is taken in: in memory (a small file, a
# zip member, a CSV row) or still in the upload's temporary file.
Content = bytes | SpooledFile


def whole(content: Content) -> bytes:
    """All the bytes, for readers that need them at once (CSV text, PostgreSQL's bind)."""
    return content if isinstance(content, bytes) else content.whole()


def slices(content: Content, size: int = SLICE_BYTES) -> Iterator[bytes | memoryview]:
    if isinstance(content, SpooledFile):
        yield from content.slices(size)
        return
    view = memoryview(content)
    for offset in range(0, len(content), size):
        yield view[offset:offset + size]


def head(content: Content, size: int) -> bytes:
    return content[:size] if isinstance(content, bytes) else content.read(0, size)


@contextlib.contextmanager
def opened(content: Content) -> Iterator[BinaryIO]:
    """A file object over the bytes, closed after the block."""
    with (io.BytesIO(content) if isinstance(content, bytes) else content.opened()) as file:
        yield file


def sha256_of(content: Content) -> str:
    """The content's sha256 in hex, read a slice at a time."""
    digest = hashlib.sha256()
    for piece in slices(content):
        digest.update(piece)
    return digest.hexdigest()
