"""What fingerprinting base weights by content costs (memfit.core.integrity.folder_fingerprint, the function behind
memfit.recipes.saved_run.base_fingerprint): GB/s hashing from disk (each file's pages dropped from the page cache
first with posix_fadvise, so only this benchmark's files are evicted), from the page cache, and the verification of an
unchanged folder through the file-identity memo (stat calls only).

    python benchmarks/fingerprint_cost.py --mb 384 --files 4
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from memfit.core.integrity import folder_fingerprint


def write_weights(folder: Path, total_mb: int, files: int) -> int:
    per_file = total_mb * 2**20 // files // 4  # fp32 values per file
    generator = torch.Generator().manual_seed(0)
    for i in range(files):
        save_file({"weight": torch.randn(per_file, generator=generator)},
                  str(folder / f"model-{i + 1:05d}-of-{files:05d}.safetensors"))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    return sum(p.stat().st_size for p in folder.iterdir())


def drop_page_cache(folder: Path) -> None:
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn) -> tuple[float, str]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=384, help="total size of the random safetensors files")
    parser.add_argument("--files", type=int, default=4, help="number of shards")
    parser.add_argument("--dir", help="where to write them (default: a temporary folder; pick the disk you care about)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder, memo = Path(tmp) / "model", Path(tmp) / "file_digests.json"
        folder.mkdir()
        size = write_weights(folder, args.mb, args.files)
        gb = size / 1e9
        drop_page_cache(folder)
        cold, first = timed(lambda: folder_fingerprint(folder, memo=memo))
        warm, again = timed(lambda: folder_fingerprint(folder))  # no memo: hashed again, now from the page cache
        cached, third = timed(lambda: folder_fingerprint(folder, memo=memo))
        assert first == again == third
        raw = bytes(64 << 20)
        raw_s, _ = timed(lambda: hashlib.sha256(raw).hexdigest())
        print(f"{size / 2**20:.0f} MiB in {args.files} safetensors files + config.json")
        print(f"cold (from disk):      {cold:7.3f} s  {gb / cold:6.2f} GB/s  ({cold / gb:.2f} s per GB)")
        print(f"page cache:            {warm:7.3f} s  {gb / warm:6.2f} GB/s  ({warm / gb:.2f} s per GB)")
        print(f"cached (identity memo):{cached:7.4f} s  {gb / cached:6.0f} GB/s  (stat calls only)")
        print(f"sha256 in memory:      {0.067 / raw_s:6.2f} GB/s  (one core's hashing limit)")


if __name__ == "__main__":
    main()
