"""Minimal PDFs written by hand for the bad-input tests: text pages, blank (scanned-like), encrypted, slow."""
from __future__ import annotations

import zlib
from pathlib import Path

from pypdf import PdfReader, PdfWriter


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content_stream(text: str) -> bytes:
    ops = ["BT", "/F1 10 Tf", "12 TL", "40 800 Td"]
    for line in text.split("\n"):
        ops.append(f"({_escape(line)}) Tj T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def pdf_bytes(pages: list[str], *, compress_repeat: int = 0) -> bytes:
    """A valid PDF with one Helvetica text page per string (latin-1 text only).

    `compress_repeat` > 0 instead builds one page whose Flate-compressed content repeats a text operator that many
    times: a few kilobytes on disk, seconds of pypdf work - the shape of a file crafted to be slow.
    """
    if compress_repeat:
        streams = [zlib.compress(b"BT /F1 10 Tf 40 800 Td " + b"(slow) Tj 0 -1 Td " * compress_repeat + b"ET")]
        stream_dict = "/Filter /FlateDecode "
    else:
        streams, stream_dict = [_content_stream(text) for text in pages], ""
    n = len(streams)
    font_id = 3 + 2 * n
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode()]
    for i, stream in enumerate(streams):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        objects.append(f"<< {stream_dict}/Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_text_pdf(path: Path, pages: list[str]) -> Path:
    path.write_bytes(pdf_bytes(pages))
    return path


def write_blank_pdf(path: Path, n_pages: int = 1) -> Path:
    """Pages without a text layer, like a scan."""
    writer = PdfWriter()
    for _ in range(n_pages):
        writer.add_blank_page(width=612, height=842)
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def write_encrypted_pdf(path: Path, source: Path, password: str = "pw") -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(password)
    with path.open("wb") as handle:
        writer.write(handle)
    return path


_SYLLABLES = "ka ri mo te lu sa ne vo pi da".split()


def _tag(k: int) -> str:
    """A made-up word per k, so lines differ in letters (header detection ignores digits)."""
    return "".join(_SYLLABLES[int(d)] for d in str(k)).capitalize()


def english_page(seed: int = 0, lines: int = 12) -> str:
    """A page of plain English prose, different in every line for every `seed` (no accidental running headers)."""
    sentences = [
        "The ocean has absorbed most of the excess heat in the climate system since the industrial era.",
        "Marine heatwaves are becoming more frequent, and they are projected to become more intense.",
        "Coral reefs and kelp forests are among the ecosystems that are most at risk from these events.",
        "Adaptation can reduce some of the risks, but it cannot remove all of them for the people who live there.",
        "This is why the report calls for rapid and deep reductions in the emissions of greenhouse gases.",
    ]
    return "\n".join(f"{sentences[(i + seed) % len(sentences)]} See {_tag(100 + seed * lines + i)}."
                     for i in range(lines))
