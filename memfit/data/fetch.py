"""What `memfit data fetch CORPUS DIR` does (the command: memfit/cli/data.py): download a corpus from its pinned public sources, verified by sha256.

The manifest (memfit/data/corpora/<name>.json) pins every file to the repository, path and commit it came from, with
its size and sha256, so a fetch either reproduces those exact bytes or says which file it could not get and why.
Downloads go to `<file>.part` and resume with an HTTP Range request, so a dropped connection costs only the bytes not
yet received; one file failing never stops the others.
"""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from memfit.core.integrity import file_sha256
from memfit.data.errors import DataError

ATTEMPTS = 3  # per file and run: each attempt resumes where the last one stopped
CHUNK = 1 << 16


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already present with the right checksum
    failed: dict[str, str] = field(default_factory=dict)  # file name -> why, and what to do


def load_manifest(corpus: str) -> dict:
    folder = resources.files("memfit.data").joinpath("corpora")
    names = sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))
    if corpus not in names:
        raise DataError(f"unknown corpus {corpus!r}; choose one of: {', '.join(names)}")
    return json.loads(folder.joinpath(f"{corpus}.json").read_text())


def source_url(entry: dict, mirror: str | None, base_url: str) -> str:
    """The pinned source (repository at the commit), or a mirror that serves the files by their corpus name."""
    if mirror:
        return f"{mirror.rstrip('/')}/{quote(entry['name'])}"
    return f"{base_url}/{entry['repo']}/{entry['commit']}/{quote(entry['path'])}"


def _download(url: str, part: Path, size: int, timeout: float) -> None:
    """Append the missing bytes of `url` to `part`; raises OSError/HTTPException when the transfer breaks."""
    have = part.stat().st_size if part.exists() else 0
    if have >= size:  # complete (or over-long, which the checksum then refuses): nothing left to ask for
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = have and response.status == 206
        with part.open("ab" if resumed else "wb") as out:  # a server ignoring Range sends everything again
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
    if part.stat().st_size < size:  # the server closed early without an error
        raise http.client.IncompleteRead(b"", size - part.stat().st_size)


def fetch_file(entry: dict, dest: Path, url: str, timeout: float) -> str:
    """'skipped' or 'fetched'; raises RuntimeError with the user-facing reason otherwise."""
    target, part = dest / entry["name"], dest / (entry["name"] + ".part")
    if target.exists() and file_sha256(target) == entry["sha256"]:
        return "skipped"
    error = None
    for _ in range(ATTEMPTS):
        try:
            _download(url, part, entry["size"], timeout)
            error = None
            break
        except urllib.error.HTTPError as exc:  # the source answered but refused: retrying will not help
            raise RuntimeError(f"{url} answered HTTP {exc.code}; check the address or try again later") from exc
        except (OSError, http.client.HTTPException) as exc:
            error = exc
    if error is not None:
        got = part.stat().st_size if part.exists() else 0
        raise RuntimeError(f"transfer broke after {got:,} of {entry['size']:,} bytes ({error!r}); "
                           "run the same command again to resume")
    actual = file_sha256(part)
    if actual != entry["sha256"]:
        part.unlink()  # wrong bytes cannot be resumed into right ones
        raise RuntimeError(f"checksum mismatch (sha256 {actual[:12]}..., expected {entry['sha256'][:12]}...); "
                           "the download was discarded; the source may have changed, try a --mirror")
    part.replace(target)
    return "fetched"


def fetch_corpus(corpus: str, dest: Path, mirror: str | None = None, timeout: float = 60.0) -> FetchReport:
    manifest = load_manifest(corpus)
    dest.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    for entry in manifest["files"]:
        try:
            outcome = fetch_file(entry, dest, source_url(entry, mirror, manifest["base_url"]), timeout)
        except RuntimeError as exc:
            report.failed[entry["name"]] = str(exc)
            continue
        (report.fetched if outcome == "fetched" else report.skipped).append(entry["name"])
    return report
