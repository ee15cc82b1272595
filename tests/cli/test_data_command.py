"""`memfit data`: the dispatcher routes every `data` command to memfit/cli/data.py; its help lists both actions and
the per-source keys; inspect names or reads every file of a mixed folder; errors are one line with exit 2."""
from __future__ import annotations

import json

from memfit.cli import main


def test_data_help_lists_inspect_fetch_and_the_source_keys(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "inspect" in out and "fetch" in out and "messages_column" in out and "kind: table" in out
    try:
        main(["data", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "{inspect,fetch}" in capsys.readouterr().out


def test_inspect_of_a_chat_table_detects_the_messages_column(tmp_path, capsys):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(3)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "inspect", str(tmp_path / "chat.jsonl")]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "chat.jsonl" in l)
    assert line.split()[1:3] == ["3", "3"]  # three documents, all three read as chat


def test_unusable_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memfit data: ") and len(err.strip().splitlines()) == 1
    assert main(["data", "fetch", "no-such-corpus", str(tmp_path / "d")]) == 2
    assert "unknown corpus" in capsys.readouterr().err


def test_inspect_of_a_mixed_folder_names_every_file(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from pdf_factory import english_page, write_text_pdf

    folder = tmp_path / "mixed"
    folder.mkdir()
    for n in range(2):
        write_text_pdf(folder / f"p{n}.pdf", [english_page(n)])
    (folder / "notes.md").write_text("# notes\n" + english_page(3, lines=2))
    (folder / "rows.jsonl").write_text('{"text": "a row"}\n')
    assert main(["data", "inspect", str(folder), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "p0.pdf" in out and "p1.pdf" in out and "Not read (2):" in out
    assert "notes.md: not read" in out and "rows.jsonl: not read" in out
