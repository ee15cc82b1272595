"""`memfit data inspect` on inputs that are not a PDF folder: which source a path stands for, and the per-source
statistics table with every skipped input named."""
from __future__ import annotations

import json

from memfit.data.sources import SavedSource, TableSource, TextSource
from memfit.data.source_stats import is_pdf_folder, render_source_stats, source_for_path


def test_a_path_stands_for_the_source_its_contents_make(tmp_path):
    pdfs, notes, saved = tmp_path / "pdfs", tmp_path / "notes", tmp_path / "saved"
    for folder in (pdfs, notes, saved):
        folder.mkdir()
    (pdfs / "a.pdf").write_bytes(b"%PDF-1.4")
    (pdfs / "readme.txt").write_text("beside the PDFs")
    (notes / "n.md").write_text("# notes")
    (saved / "dataset_info.json").write_text("{}")
    table = tmp_path / "rows.jsonl"
    table.write_text("{}\n")
    assert is_pdf_folder(str(pdfs)) and not is_pdf_folder(str(notes)) and not is_pdf_folder(str(saved))
    assert not is_pdf_folder(str(table))
    assert is_pdf_folder(str(tmp_path / "missing"))  # the PDF pipeline's message says what it expects
    assert isinstance(source_for_path(str(table), "body", "text"), TableSource)
    assert source_for_path(str(table), "body", "text").text_column == "body"
    assert isinstance(source_for_path(str(saved)), SavedSource)
    assert isinstance(source_for_path(str(notes)), TextSource)


def test_the_table_counts_documents_chat_samples_and_characters_and_names_what_was_skipped(tmp_path):
    chat = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Warming."}]},
            {"messages": "not a list"}]
    chat.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("The ocean is warming.")
    (notes / "b.txt").write_text("Ice sheets are melting.")
    table = render_source_stats([TableSource(path=str(chat)), TextSource(path=str(notes), name="notes")])
    lines = table.splitlines()
    assert lines[0].split() == ["source", "documents", "chat", "chars"]
    chat_row = next(line for line in lines if line.startswith(str(chat)[-40:]))
    content = json.dumps(rows[0]["messages"], ensure_ascii=False)
    assert chat_row.split()[1:] == ["1", "1", f"{len(content):,}"]
    notes_row = next(line for line in lines if line.startswith("notes"))
    assert notes_row.split()[1:] == ["2", "0", str(len("The ocean is warming.") + len("Ice sheets are melting."))]
    assert "Skipped input (1):" in table and f"{chat}: line 2:" in table
