"""`memfit data inspect DIR`: the artefact table, skipped files, split statistics and exit codes."""
from __future__ import annotations

from pdf_factory import english_page, write_text_pdf

from memfit.cli.data import inspect_main
from memfit.data import inspect_corpus


def _folder(pdf_dir):
    for n in range(4):
        pages = [f"SPM\nSummary for Policymakers\n{p}\n{english_page(10 * n + p, lines=6)}\nThe first agri-\n"
                 f"culture result.\n{english_page(50 + 10 * n + p, lines=6)}" for p in range(1, 5)]
        write_text_pdf(pdf_dir / f"report-{n}.pdf", pages)
    (pdf_dir / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<<")
    return pdf_dir


def test_report_counts_artefacts_and_lists_skipped_files(pdf_dir, tmp_path):
    report = inspect_corpus(_folder(pdf_dir), cache_dir=tmp_path / "cache")
    assert [f.name for f in report.files] == [f"report-{n}.pdf" for n in range(4)]
    first = report.files[0]
    assert first.before["running_lines"] == 3 * 4 and first.before["hyphenations"] == 4
    assert report.residue() == dict.fromkeys(report.residue(), 0)
    text = report.render()
    assert "broken.pdf [corrupt]" in text and "report-3.pdf" in text and "TOTAL (kept)" in text
    assert "need a tokenizer" in text


def test_cli_with_a_tokenizer_prints_split_statistics(pdf_dir, tmp_path, tiny_tokenizer, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    argv = [str(_folder(pdf_dir)), "--cache-dir", str(tmp_path / "cache"), "--tokenizer", str(tmp_path / "tok"),
            "--block-size", "128", "--seed", "2"]
    assert inspect_main(argv) == 0
    out = capsys.readouterr().out
    assert "Split by document (seed 2, tokenizer" in out and "blocks of 128 tokens" in out
    train_line = next(line for line in out.splitlines() if line.startswith("train "))
    assert train_line.split()[1] == "3"  # 4 documents: 3 train, 1 test


def test_cli_exit_code_for_unusable_input(tmp_path, capsys):
    assert inspect_main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
