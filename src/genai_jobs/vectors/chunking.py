"""Chunks of a document's text, with overlap, in the embedding model's tokens.

Chunks are measured with the model's own tokenizer, so a chunk of `size` tokens
is exactly what the model reads (nothing cut off), and each chunk's text is the
document's own characters between its first and last token (spacing and case
kept, nothing re-joined from tokens).

Two ways to cut, DataRobot's chunking methods:

- token windows (no separators): windows of `size` tokens, `overlap` shared;
- recursive (separators given): the text is cut at the first separator that
  occurs in it, pieces still too long at the next separators, and the pieces are
  packed back together into chunks of up to `size` tokens, so that chunks end at
  paragraph or line ends where they can rather than mid-sentence.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Chunking:
    size: int  # tokens per chunk
    overlap: int  # tokens each chunk shares with the one before (at most)
    # Plain strings to cut at, coarsest first ("\n\n", "\n", " "); none means token windows.
    separators: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.overlap < self.size:
            raise ValueError(f"chunking needs size >= 1 and 0 <= overlap < size, "
                             f"not size={self.size}, overlap={self.overlap}")
        # A bare string would pass as a tuple of one-character separators.
        if not isinstance(self.separators, tuple) or not all(
                isinstance(separator, str) for separator in self.separators):
            raise TypeError(f"chunking separators must be a tuple of strings, "
                            f"not {self.separators!r}")

    @property
    def step(self) -> int:
        """Tokens between the starts of neighbouring token windows."""
        return self.size - self.overlap

    def count(self, tokens: int) -> int:
        """How many token windows a text of `tokens` tokens makes (separators aside)."""
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
    """The token windows of a text whose tokens are at `offsets`, in order."""
    if chunking.separators:
        # Without the text its separators cannot be found; windows would quietly ignore them.
        raise ValueError("recursive chunking needs the text: use recursive_spans or chunk_text")
    for index in range(chunking.count(len(offsets))):
        first = index * chunking.step
        end = min(first + chunking.size, len(offsets))
        yield _span(offsets, index, first, end)


def recursive_spans(text: str, offsets: list[tuple[int, int]],
                    chunking: Chunking) -> Iterator[Span]:
    """The chunks of `text`, whose tokens are at `offsets`, cut at `chunking.separators`."""
    pieces = _Pieces(text, [start for start, _ in offsets], chunking.size)
    pieces.split(0, len(text), chunking.separators)
    for index, (first, end) in enumerate(_pack(pieces.bounds, chunking)):
        yield _span(offsets, index, first, end)


def chunk_text(text: str, token_offsets: TokenOffsets,
               chunking: Chunking) -> list[tuple[Span, str]]:
    """Each chunk of `text` with its span."""
    offsets = token_offsets(text)
    found = (recursive_spans(text, offsets, chunking) if chunking.separators
             else spans(offsets, chunking))
    return [(span, text[span.start_char:span.end_char]) for span in found]


def _span(offsets: list[tuple[int, int]], index: int, first: int, end: int) -> Span:
    return Span(index, first, end, offsets[first][0], offsets[end - 1][1])


@dataclass(slots=True)
class _Pieces:
    """A text cut into pieces of at most `size` tokens.

    Pieces are kept as token bounds: piece k is tokens bounds[k] to bounds[k + 1], so
    they cover every token once, in order. A token belongs to the piece its first
    character is in, so a token across a cut (a real tokenizer may join "." and "\\n")
    is counted once, in the piece before.
    """

    text: str
    starts: list[int]  # each token's first character, ascending
    size: int
    bounds: list[int] = field(default_factory=lambda: [0])

    def split(self, start: int, end: int, separators: tuple[str, ...]) -> None:
        """Add the pieces of text[start:end], cutting at `separators` in turn while too long."""
        first, last = bisect_left(self.starts, start), bisect_left(self.starts, end)
        if last - first <= self.size:
            if last > first:  # whitespace or a lone separator between cuts makes no piece
                self.bounds.append(last)
            return
        chosen = self._first_present(start, end, separators)
        if chosen is None:
            # One piece per token: packing them makes token windows with the overlap kept.
            self.bounds.extend(range(first + 1, last + 1))
            return
        finer = separators[chosen + 1:]
        for piece_start, piece_end in self._cut(start, end, separators[chosen]):
            self.split(piece_start, piece_end, finer)

    def _first_present(self, start: int, end: int, separators: tuple[str, ...]) -> int | None:
        """The position of the first separator found in text[start:end]; None for tokens."""
        for position, separator in enumerate(separators):
            if not separator:
                return None
            if self.text.find(separator, start, end) >= 0:
                return position
        return None

    def _cut(self, start: int, end: int, separator: str) -> Iterator[tuple[int, int]]:
        """text[start:end] cut just after each `separator`, so no character falls between."""
        found = self.text.find(separator, start, end)
        while found >= 0:
            cut = found + len(separator)
            yield start, cut
            start = cut
            found = self.text.find(separator, start, end)
        yield start, end


def _pack(bounds: list[int], chunking: Chunking) -> Iterator[tuple[int, int]]:
    """Neighbouring pieces packed greedily into token ranges of at most `size` tokens."""
    if len(bounds) < 2:
        return
    first = 0  # the current chunk's first piece
    for piece in range(1, len(bounds) - 1):
        if bounds[piece + 1] - bounds[first] > chunking.size:
            yield bounds[first], bounds[piece]
            first = _carried(bounds, first, piece, chunking)
    yield bounds[first], bounds[-1]


def _carried(bounds: list[int], first: int, piece: int, chunking: Chunking) -> int:
    """The first piece of the chunk that `piece` opens after the chunk of pieces first..piece-1.

    That chunk's trailing pieces are carried over, as many as hold at most `overlap` tokens
    and leave room for `piece`; whole pieces only, so that the overlap repeats whole lines
    or words, never the ragged end of one.
    """
    room = min(chunking.overlap, chunking.size - (bounds[piece + 1] - bounds[piece]))
    # Bounds ascend, so a search finds it without walking back over up to `overlap` pieces.
    return bisect_left(bounds, bounds[piece] - room, first + 1, piece)
