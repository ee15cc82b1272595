"""readers.py: a mixed PDF folder names or reads every file; table formats are detected from their columns."""
from __future__ import annotations

import json

from pdf_factory import english_page, write_text_pdf

from memfit.data import PdfSource, TableSource, load_records


def _mixed(pdf_dir):
    for n in range(2):
        write_text_pdf(pdf_dir / f"p{n}.pdf", [english_page(n)])
    (pdf_dir / "notes.txt").write_text(english_page(5, lines=3))
    (pdf_dir / "qa.jsonl").write_text(json.dumps({"prompt": "2+2?", "completion": "4"}) + "\n")
    (pdf_dir / "slides.pptx").write_bytes(b"PK\x03\x04")
    (pdf_dir / "more").mkdir()
    return pdf_dir


def test_a_mixed_folder_names_every_file_it_does_not_read_and_how_to_include_it(pdf_dir, tmp_path):
    records, issues = load_records([PdfSource(path=str(_mixed(pdf_dir)), on_error="raise")], str(tmp_path / "c"))
    assert sorted(r.file for r in records) == ["p0.pdf", "p1.pdf"]
    reasons = {i.path.name: i.reason for i in issues if i.kind == "not_read"}
    assert sorted(reasons) == ["more", "notes.txt", "qa.jsonl", "slides.pptx"]
    assert "kind: text" in reasons["notes.txt"] and "kind: table" in reasons["qa.jsonl"]
    assert "read_other_files" in reasons["notes.txt"] and "sub-folder" in reasons["more"]


def test_a_licence_or_notice_is_named_but_never_read_as_text(pdf_dir, tmp_path):
    write_text_pdf(pdf_dir / "p0.pdf", [english_page(0)])
    (pdf_dir / "NOTICE").write_text("CC BY 4.0: the papers' authors")
    (pdf_dir / "LICENSE.txt").write_text(english_page(7, lines=3))
    for read_other_files in (False, True):
        records, issues = load_records([PdfSource(path=str(pdf_dir), read_other_files=read_other_files)],
                                       str(tmp_path / "c"))
        assert [r.file for r in records] == ["p0.pdf"]
        reasons = {i.path.name: i.reason for i in issues if i.kind == "not_read"}
        assert sorted(reasons) == ["LICENSE.txt", "NOTICE"]
        assert all("licence or notice, not training text" in reason for reason in reasons.values())


def test_read_other_files_reads_text_and_tables_as_their_kind(pdf_dir, tmp_path):
    source = PdfSource(path=str(_mixed(pdf_dir)), read_other_files=True, name="mixed", weight=2.0)
    records, issues = load_records([source], str(tmp_path / "c"))
    kinds = {r.file.rsplit("/", 1)[-1]: r.format for r in records}
    assert kinds == {"p0.pdf": "text", "p1.pdf": "text", "notes.txt": "text", "qa.jsonl": "prompt_completion"}
    assert {r.source for r in records} == {"mixed"}  # one source: its weight applies to every file
    assert sorted(i.path.name for i in issues) == ["more", "slides.pptx"]


def test_auto_format_detects_messages_and_prompt_completion_columns(tmp_path):
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (tmp_path / "c.jsonl").write_text(json.dumps(chat) + "\n")
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "plain"}) + "\n")
    records, issues = load_records([TableSource(path=str(tmp_path / f"{n}.jsonl")) for n in "cpt"])
    assert [r.format for r in records] == ["chat", "prompt_completion", "text"] and not issues
    assert TableSource(path="x.jsonl").format == "auto"
