"""Plain text out of a document, with where each PDF page starts.

HTML goes through the standard library's parser (no extra dependency, and it
never fails on broken markup); PDF through pypdf, from the embeddings extra.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser

from genai_jobs.vectors.records import Document, DocumentKind
from genai_jobs.vectors.spooled import whole

# Elements whose content is not text a reader sees.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "svg"})
# Elements after which text continues on a new line.
_BLOCKS = frozenset({
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "header", "footer", "blockquote", "pre", "hr", "title", "dd", "dt",
})
PAGE_SEPARATOR = "\n\n"


class ExtractionFailed(Exception):
    """The document's text could not be read; the message says why."""


@dataclass(frozen=True, slots=True)
class ExtractedText:
    text: str
    # Offsets in `text` where pages 1, 2, ... start (PDF only).
    page_starts: list[int] = field(default_factory=list)

    def segments(self) -> list[tuple[int | None, int, int]]:
        """(page, start, end) of each page's text, or (None, 0, end) of a whole document:
        chunks never cross a page, so each one has a page to cite."""
        if not self.page_starts:
            return [(None, 0, len(self.text))]
        ends = [start - len(PAGE_SEPARATOR) for start in self.page_starts[1:]]
        return [(number, start, end) for number, (start, end)
                in enumerate(zip(self.page_starts, [*ends, len(self.text)], strict=True), 1)]

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding `offset`, or None for documents without pages."""
        if not self.page_starts:
            return None
        page = 0
        for number, start in enumerate(self.page_starts, 1):
            if start > offset:
                break
            page = number
        return max(page, 1)


def extract(document: Document) -> ExtractedText:
    if document.kind is DocumentKind.PDF:
        return extract_pdf(whole(document.content))
    text = whole(document.content).decode("utf-8-sig", errors="replace")
    if document.kind is DocumentKind.HTML:
        return ExtractedText(html_text(text))
    return ExtractedText(text)


def html_text(markup: str) -> str:
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    return parser.text()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden_depth += 1
        elif tag in _BLOCKS:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden_depth = max(self._hidden_depth - 1, 0)
        elif tag in _BLOCKS:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self._parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self._parts).splitlines())
        return "\n".join(line for line in lines if line)


def extract_pdf(content: bytes) -> ExtractedText:
    from pypdf import PdfReader

    parts: list[str] = []
    starts: list[int] = []
    offset = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns about what it can repair
            for page in PdfReader(io.BytesIO(content)).pages:
                text = page.extract_text() or ""
                starts.append(offset)
                parts.append(text)
                offset += len(text) + len(PAGE_SEPARATOR)
    except Exception as exc:  # pypdf raises many kinds on broken files; all mean the same
        raise ExtractionFailed(f"corrupt PDF: {_first_line(exc)}") from exc
    return ExtractedText(PAGE_SEPARATOR.join(parts), starts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
