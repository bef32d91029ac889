"""The text of a PDF, in a child process that the parent bounds in time and memory
(``chat.files.pdf_text``): pypdf is pure Python, and a crafted 15 KB PDF held a thread
for 7.7 s (three pages, 22.7 s). A thread cannot be stopped; a process can be killed.

``python -m chat.pdftext <limit> <max_pages> <max_memory>`` reads the PDF on stdin and
writes each page's text to stdout as it goes (flushed page by page, so a killed child
leaves the pages it finished), stopping after ``limit`` characters or ``max_pages``
pages; its address space is limited to ``max_memory`` bytes (a decompression bomb fails
instead of swapping). Exit status 0: every page read (or the limit reached); 3
(``MORE_PAGES``): stopped at ``max_pages`` with pages left; anything else: the PDF could
not be read. Imports pypdf only, never Django: the child starts in a fraction of a second.
"""

from __future__ import annotations

import io
import resource
import sys

PAGE_SEPARATOR = "\n\n"
MORE_PAGES = 3


def write_pages(data: bytes, *, limit: int, max_pages: int, out: io.TextIOBase) -> bool:
    """Write the pages' text to ``out``; whether pages were left unread at ``max_pages``."""
    from pypdf import PdfReader

    length = 0
    pages = PdfReader(io.BytesIO(data)).pages
    for number, page in enumerate(pages):
        if length > limit:
            return False
        if number >= max_pages:
            return True
        text = (PAGE_SEPARATOR if number else "") + (page.extract_text() or "")
        out.write(text)
        out.flush()
        length += len(text)
    return False


def main() -> int:
    limit, max_pages, max_memory = (int(value) for value in sys.argv[1:4])
    resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace")
    try:
        more = write_pages(sys.stdin.buffer.read(), limit=limit, max_pages=max_pages, out=out)
    except Exception as exc:  # whatever pypdf raises for a PDF it cannot read, MemoryError included
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 2
    return MORE_PAGES if more else 0


if __name__ == "__main__":
    sys.exit(main())
