"""Real files made in the tests: a small PDF with a line of text, a PNG."""

from __future__ import annotations

import struct
import zlib


def pdf_with_text(*lines: str) -> bytes:
    """A one-page PDF (Helvetica, one line of text per argument), its xref table computed."""
    return pdf_with_pages(list(lines))


def text_stream(lines: list[str]) -> bytes:
    text_ops = " ".join(f"({line}) Tj 0 -14 Td" for line in lines)
    return f"BT /F1 12 Tf 72 720 Td {text_ops} ET".encode()


def pdf_with_pages(*pages: list[str]) -> bytes:
    """A PDF of one page per argument, each with its lines of text."""
    return pdf_of_streams([text_stream(lines) for lines in pages])


def pdf_slow_to_read(operations: int = 400_000) -> bytes:
    """A small PDF whose one page is ``operations`` text-drawing operators, compressed (about
    10 KB for 400,000): each costs pypdf's text extraction Python work, together minutes,
    as the audit's crafted 15 KB file took 7.7 s a page."""
    stream = b"BT /F1 12 Tf " + b"1 0 0 1 72 720 Tm (a) Tj " * operations + b"ET"
    return pdf_of_streams([stream], compress=True)


def pdf_of_streams(streams: list[bytes], *, compress: bool = False) -> bytes:
    """A PDF whose pages draw ``streams`` (Helvetica as /F1), its xref table computed."""
    count = len(streams)
    kids = " ".join(f"{3 + 2 * index} 0 R" for index in range(count)).encode()
    font = 3 + 2 * count
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count)]
    for index, stream in enumerate(streams):
        data = zlib.compress(stream) if compress else stream
        flate = b" /Filter /FlateDecode" if compress else b""
        objects += [
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * index, font),
            b"<< /Length %d%s >>\nstream\n" % (len(data), flate) + data + b"\nendstream",
        ]
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def png(width: int = 2, height: int = 2) -> bytes:
    """A real (decodable) red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
