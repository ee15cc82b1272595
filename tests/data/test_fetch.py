"""`memfit data fetch`: against a local HTTP server on 127.0.0.1 serving the real corpus by file name."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from memfit.cli import main as cli_main
from memfit.data.fetch import fetch_corpus, load_manifest

CORPUS = Path("/work/shared/corpus/climate")
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="real climate corpus not present")


class CorpusHandler(http.server.BaseHTTPRequestHandler):
    """Serves `root` with HTTP Range support; the first GET of a file in `drop_once` closes the connection halfway."""

    root: Path
    drop_once: set[str]
    log: list[tuple[str, str | None]]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        name = self.path.lstrip("/")
        self.log.append((name, self.headers.get("Range")))
        path = self.root / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if name in self.drop_once:
            self.drop_once.discard(name)
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """serve(root, drop_once=()) -> (base address, request log); the server stops after the test."""
    servers = []

    def start(root: Path, drop_once=()):
        log: list = []
        handler = type("Handler", (CorpusHandler,), {"root": root, "drop_once": set(drop_once), "log": log})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_manifest_pins_every_corpus_file_to_its_source_and_checksum():
    manifest = load_manifest("climate")
    assert sorted(e["name"] for e in manifest["files"]) == sorted(p.name for p in CORPUS.glob("*.pdf"))
    for entry in manifest["files"]:
        assert entry["repo"].count("/") == 1 and entry["path"] and len(entry["commit"]) >= 12
        assert (CORPUS / entry["name"]).stat().st_size == entry["size"]
    sample = next(e for e in manifest["files"] if e["name"].startswith("unfccc"))
    assert hashlib.sha256((CORPUS / sample["name"]).read_bytes()).hexdigest() == sample["sha256"]


def test_fetch_downloads_everything_verified_then_skips_what_is_valid(serve, tmp_path):
    base, log = serve(CORPUS)
    report = fetch_corpus("climate", tmp_path / "out", mirror=base)
    assert not report.failed and len(report.fetched) == 12
    for pdf in CORPUS.glob("*.pdf"):
        assert (tmp_path / "out" / pdf.name).read_bytes() == pdf.read_bytes()
    assert not list((tmp_path / "out").glob("*.part"))
    log.clear()
    again = fetch_corpus("climate", tmp_path / "out", mirror=base)
    assert len(again.skipped) == 12 and not again.fetched and log == []  # nothing asked of the server


def test_dropped_connection_resumes_with_a_range_request(serve, tmp_path):
    name = "scirep-2021-marine-heatwave-networks.pdf"
    base, log = serve(CORPUS, drop_once={name})
    report = fetch_corpus("climate", tmp_path, mirror=base)
    assert not report.failed and name in report.fetched
    requests = [rng for file, rng in log if file == name]
    size = (CORPUS / name).stat().st_size
    assert requests == [None, f"bytes={size // 2}-"]  # the second request asked only for the missing half
    assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes()


def test_corrupted_file_is_named_and_refused_and_the_rest_still_arrive(serve, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(CORPUS, served, copy_function=shutil.copyfile)
    bad = "unfccc-2015-paris-agreement-decision.pdf"
    data = bytearray((served / bad).read_bytes())
    data[1000] ^= 0xFF
    (served / bad).write_bytes(bytes(data))
    (served / "ipcc-sr15-spm.pdf").unlink()  # and one file the server does not have
    base, _ = serve(served)
    report = fetch_corpus("climate", tmp_path / "out", mirror=base)
    assert set(report.failed) == {bad, "ipcc-sr15-spm.pdf"}
    assert "checksum mismatch" in report.failed[bad]
    assert "HTTP 404" in report.failed["ipcc-sr15-spm.pdf"]
    assert not (tmp_path / "out" / bad).exists() and not (tmp_path / "out" / (bad + ".part")).exists()
    assert len(report.fetched) == 10


def test_cli_reports_failures_with_exit_1_and_unknown_corpus_with_exit_2(serve, tmp_path, capsys):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copyfile(CORPUS / "ipcc-sr15-spm.pdf", served / "ipcc-sr15-spm.pdf")
    base, _ = serve(served)
    assert cli_main(["data", "fetch", "climate", str(tmp_path / "out"), "--mirror", base]) == 1
    captured = capsys.readouterr()
    assert "1/12 files verified" in captured.out and captured.err.count("FAILED") == 11
    assert cli_main(["data", "fetch", "weather", str(tmp_path / "out")]) == 2
    assert "unknown corpus 'weather'" in capsys.readouterr().err
