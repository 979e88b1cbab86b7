"""Token windows over a document's text, with overlap, in the embedding model's tokens.

Chunks are measured with the model's own tokenizer, so a chunk of `size` tokens
is exactly what the model reads (nothing cut off), and each chunk's text is the
document's own characters between its first and last token (spacing and case
kept, nothing re-joined from tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Chunking:
    size: int  # tokens per chunk
    overlap: int  # tokens each chunk shares with the one before

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.overlap < self.size:
            raise ValueError(f"chunking needs size >= 1 and 0 <= overlap < size, "
                             f"not size={self.size}, overlap={self.overlap}")

    @property
    def step(self) -> int:
        return self.size - self.overlap

    def count(self, tokens: int) -> int:
        """How many chunks a text of `tokens` tokens makes."""
        if tokens <= 0:
            return 0
        if tokens <= self.size:
            return 1
        return 1 + -(-(tokens - self.size) // self.step)


@dataclass(frozen=True, slots=True)
class Span:
    index: int  # the chunk's position in its document
    first_token: int
    end_token: int  # exclusive
    start_char: int
    end_char: int  # exclusive


TokenOffsets = Callable[[str], list[tuple[int, int]]]


def spans(offsets: list[tuple[int, int]], chunking: Chunking) -> Iterator[Span]:
    """The chunks of a text whose tokens are at `offsets`, in order."""
    for index in range(chunking.count(len(offsets))):
        first = index * chunking.step
        end = min(first + chunking.size, len(offsets))
        yield Span(index, first, end, offsets[first][0], offsets[end - 1][1])


def chunk_text(text: str, token_offsets: TokenOffsets,
               chunking: Chunking) -> list[tuple[Span, str]]:
    """Each chunk of `text` with its span."""
    return [(span, text[span.start_char:span.end_char])
            for span in spans(token_offsets(text), chunking)]
