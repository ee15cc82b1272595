"""Hostile input to the non-PDF sources and the caches (issue 30): each case that once gave a silent wrong answer
is kept here as a regression test - duplicates, binary text, null chat content, files that are no regular files,
an output folder inside the data, edited or damaged cache entries, leftovers of killed builds, orphaned workers."""
from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest
from pdf_factory import english_page, write_text_pdf

from memfit.data import DataError, build_bundle, extract_pdfs, load_records
from memfit.data.sources import PdfSource, TableSource, TextSource, check_output_outside_sources

CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML
    return tokenizer


def _notes(folder, n=4, start=0):
    folder.mkdir(exist_ok=True)
    for i in range(start, start + n):
        (folder / f"n{i}.txt").write_text(english_page(i, lines=3))
    return folder


def test_four_identical_text_files_give_one_document_never_one_in_test_and_three_in_train(tmp_path, tiny_tokenizer):
    notes = _notes(tmp_path / "notes", 3)
    for copy_number in range(4):
        (notes / f"same-{copy_number}.txt").write_text("The same paragraph about sea ice, saved four times.\n" * 5)
    (notes / "zz-near.txt").write_text("THE SAME paragraph about sea ice,   saved four times!!\n" * 5)
    bundle, issues = build_bundle([TextSource(path=str(notes))], tiny_tokenizer, block_size=32)
    assert sorted(i.path.name for i in issues if i.kind == "duplicate") == ["same-1.txt", "same-2.txt", "same-3.txt",
                                                                            "zz-near.txt"]
    assert "nearly the same text" in next(str(i) for i in issues if i.path.name == "zz-near.txt")
    texts = bundle.documents["text"]
    assert len(texts) == len(set(texts)) == 4 and len(bundle.plan.test) == 1


def test_duplicates_across_a_table_and_a_text_folder_are_named_with_file_and_line(tmp_path):
    notes = _notes(tmp_path / "notes", 2)
    rows = [{"text": english_page(0, lines=3)}, {"text": "a new row"}, {"text": "a new row"}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, issues = load_records([TextSource(path=str(notes)), TableSource(path=str(tmp_path / "t.jsonl"),
                                                                             on_error="raise")])
    assert [r.text for r in records].count("a new row") == 1 and len(records) == 3
    assert [(i.kind, i.reason.split(":")[0]) for i in issues] == [("duplicate", "line 1"), ("duplicate", "line 3")]


def test_binary_text_that_is_valid_utf8_is_refused_per_file(tmp_path):
    notes = _notes(tmp_path / "notes", 2)
    (notes / "blob.txt").write_bytes(bytes(range(0, 128)) * 20)  # 7-bit, valid UTF-8, NULs and control bytes
    (notes / "ctrl.txt").write_bytes(b"ab\x01\x02\x03cd\x04\x05" * 50)
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "x\x07\x07\x07\x08y"}) + "\n")
    records, issues = load_records([TextSource(path=str(notes)), TableSource(path=str(tmp_path / "t.jsonl"))])
    assert sorted(r.file for r in records) == ["n0.txt", "n1.txt"]
    assert sorted((i.path.name, i.kind) for i in issues) == [("blob.txt", "binary"), ("ctrl.txt", "binary"),
                                                             ("t.jsonl", "binary")]


def test_chat_rows_with_null_or_empty_content_are_skipped_with_file_and_line(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]},
            {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "ok"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"prompt": "2+2?", "completion": ""}, {"prompt": "2+2?", "completion": "4"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    records, issues = load_records([TableSource(path=str(tmp_path / "c.jsonl"), format="chat"),
                                    TableSource(path=str(tmp_path / "p.jsonl"), format="prompt_completion")])
    assert [(r.file.rsplit("/", 1)[-1], r.line) for r in records] == [("c.jsonl", 3), ("p.jsonl", 2)]
    assert all("None" not in m["content"] for r in records for m in r.messages)
    assert [(i.path.name, i.kind, i.reason.split(":")[0]) for i in issues] == [
        ("c.jsonl", "empty-content", "line 1"), ("c.jsonl", "empty-content", "line 2"),
        ("p.jsonl", "empty-content", "line 1")]


def test_fifos_folders_named_like_files_and_link_loops_are_skipped_never_read(tmp_path):
    notes = _notes(tmp_path / "notes", 2)
    os.mkfifo(notes / "pipe.txt")  # reading it would block forever
    (notes / "folder.txt").mkdir()
    (notes / "loop.txt").symlink_to(notes / "loop.txt")
    (notes / "sub").symlink_to(notes)  # a link back up: the walk must not recurse into it
    os.mkfifo(tmp_path / "pipe.jsonl")
    records, issues = load_records([TextSource(path=str(notes)), TableSource(path=str(tmp_path / "pipe.jsonl"))])
    assert sorted(r.file for r in records) == ["n0.txt", "n1.txt"]
    kinds = {i.path.name: i.kind for i in issues}
    assert kinds == {"pipe.txt": "not_a_file", "folder.txt": "not_a_file", "loop.txt": "symlink_loop",
                     "pipe.jsonl": "not_a_file"}
    assert "FIFO" in next(i.reason for i in issues if i.path.name == "pipe.txt")


def test_an_output_folder_inside_a_data_source_is_refused(tmp_path):
    data = _notes(tmp_path / "data", 1)
    sources = [TextSource(path=str(data)), TableSource(path=str(tmp_path / "t.jsonl"))]
    with pytest.raises(DataError, match="inside the data source"):
        check_output_outside_sources(data / "runs", sources)
    with pytest.raises(DataError, match="inside the data source"):
        check_output_outside_sources(data, sources)
    check_output_outside_sources(tmp_path / "runs", sources)  # beside the data: fine
    check_output_outside_sources(tmp_path, [PdfSource(path=str(data))])  # the data inside the output: fine


def test_an_edited_text_cache_entry_is_re_extracted_with_one_line(pdf_dir, tmp_path, caplog):
    for n in range(2):
        write_text_pdf(pdf_dir / f"g{n}.pdf", [english_page(n)])
    cache = tmp_path / "cache"
    first = extract_pdfs(pdf_dir, cache)
    entry = cache / f"{first.documents[0].sha256}.json"
    data = json.loads(entry.read_text())
    data["pages"] = ["text that was never in the PDF"]
    entry.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="memfit.data"):
        second = extract_pdfs(pdf_dir, cache)
    assert [d.pages for d in second.documents] == [d.pages for d in first.documents]
    assert not second.documents[0].from_cache and second.documents[1].from_cache
    assert [r.message for r in caplog.records if "checksum" in r.message] and entry.name in caplog.text


def _train_ids(bundle):
    return [list(r) for r in bundle.train["input_ids"]]


def test_flipped_arrow_token_ids_are_rebuilt_not_trained_on(tmp_path, tiny_tokenizer, caplog):
    sources = [TextSource(path=str(_notes(tmp_path / "notes", 5)))]
    cache = tmp_path / "cache"
    clean, _ = build_bundle(sources, tiny_tokenizer, storage="arrow", block_size=32, cache_dir=str(cache))
    expected = _train_ids(clean)  # read before the damage: the cache files are memory-mapped
    for pattern in ("tokens/tokens-*.arrow", "blocks/blocks-*.arrow", "records/**/*.arrow"):
        for path in cache.glob(pattern):
            raw = bytearray(path.read_bytes())
            raw[-200] ^= 0x01  # one flipped bit in the data
            path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="memfit.data"):
        again, _ = build_bundle(sources, tiny_tokenizer, storage="arrow", block_size=32, cache_dir=str(cache))
    assert _train_ids(again) == expected
    rebuilt = [r.message for r in caplog.records if "rebuilding" in r.message]
    assert len(rebuilt) == 3 and all("sha256" in m for m in rebuilt)


def test_a_text_edited_at_the_same_size_with_its_mtime_restored_is_read_again(tmp_path, tiny_tokenizer):
    notes = _notes(tmp_path / "notes", 4)
    target = notes / "n0.txt"
    stamp = target.stat()
    cache = str(tmp_path / "cache")
    build_bundle([TextSource(path=str(notes))], tiny_tokenizer, storage="arrow", block_size=32,
                 cache_dir=cache)
    text = target.read_text()
    target.write_text(text.replace("e", "a"))
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert target.stat().st_size == stamp.st_size and target.stat().st_mtime_ns == stamp.st_mtime_ns
    bundle, _ = build_bundle([TextSource(path=str(notes))], tiny_tokenizer, storage="arrow", block_size=32,
                             cache_dir=cache)
    memory, _ = build_bundle([TextSource(path=str(notes))], tiny_tokenizer, block_size=32)
    assert text.replace("e", "a") in bundle.documents["text"]
    assert _train_ids(bundle) == _train_ids(memory)


def test_temporary_files_of_a_killed_build_are_removed_unless_a_build_is_running(tmp_path, tiny_tokenizer):
    import fcntl

    sources = [TextSource(path=str(_notes(tmp_path / "notes", 3)))]
    cache = tmp_path / "cache"
    (cache / "tokens").mkdir(parents=True)
    (cache / "records" / "generator" / "x" / "0.0.0.incomplete").mkdir(parents=True)
    leftover = cache / "tokens" / "tmpab12cd"
    leftover.write_bytes(b"half a file")
    with open(cache / ".build.lock", "a+") as running:  # another process building now: its temp files are live
        fcntl.flock(running, fcntl.LOCK_SH)
        build_bundle(sources, tiny_tokenizer, storage="arrow", block_size=32, cache_dir=str(cache))
        assert leftover.exists()
    build_bundle(sources, tiny_tokenizer, storage="arrow", block_size=32, cache_dir=str(cache))
    assert not leftover.exists() and not list(cache.rglob("*.incomplete"))


def test_extraction_workers_die_with_a_killed_parent(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import os, time
        from memfit.data.pdf.isolation import run_isolated

        def hang(_):
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(600)

        run_isolated(hang, [0], timeout_s=600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):  # wait for the worker to start (a condition, not a timing assertion)
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        for _ in range(300):
            if not os.path.exists(f"/proc/{child}") or "Z" in _state(child):
                break
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{child}") or "Z" in _state(child)
    finally:
        parent.kill()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
