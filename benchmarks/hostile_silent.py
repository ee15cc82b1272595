"""Issue 30's silent cases (exit 0 with a wrong result, once), as benchmarks/hostile_cases.py plays them."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from hostile_lab import REPO, Outcome, case, dead_pid, flip, fresh_folder, save_base, truncate


@case("silent")
def extend_finished_run(lab):
    run = lab.train()
    before = load_file(str(run / "checkpoints/step-00000002/model.safetensors"))

    def moved(_):
        after = load_file(str(run / "checkpoints/step-00000003/model.safetensors"))
        return lab.results()["train"]["steps"] == 3 and any(not torch.equal(before[k], after[k]) for k in before)
    return lab.run("train", lab.recipe(), "--max-steps", "3", "--keep-last", "5", expect="succeed", check=moved)


@case("silent")
def reinitialised_base(lab):
    run = lab.train()
    save_base(lab.root / "base", lab.tokenizer, seed=1)  # same folder, same shapes, other weights
    return [lab.run("train", lab.recipe(), "--max-steps", "3", expect="refuse", note="resume"),
            lab.run("eval", run, expect="refuse"),
            lab.run("merge", run, "--out", lab.root / "merged", expect="refuse",
                    check=lambda _: not (lab.root / "merged").exists())]


@case("silent")
def flipped_adapter_bit(lab):
    run = lab.train()
    flip(run / "adapter/adapter_model.safetensors", -7)
    return lab.run("eval", run, expect="refuse")


def _converted(lab, damage) -> Outcome:
    """The user's converted SmolLM2 cache (540 MB), copied into the lab's MEMFIT_CACHE and damaged there; loaded
    through what every command calls for the default model."""
    import shutil

    from memfit.core.integrity import manifest_problem

    real = Path(os.environ.get("MEMFIT_CACHE", Path.home() / ".cache/memfit")) / "models/smollm2-135m"
    if not (real / "memfit_checksums.json").is_file():
        return Outcome(["(not run)"], 0, "", "succeed", note="no converted SmolLM2 cache on this machine")
    copy = lab.root / "cache/models/smollm2-135m"
    shutil.copytree(real, copy)
    damage(copy / "model.safetensors")
    code = "import memfit.models as m; m.load_model()"
    return lab.run("-c", code, expect="succeed", program="python", note="what every command loads by default",
                   check=lambda out: "converting it again" in out.stderr and manifest_problem(copy) is None)


@case("silent")
def converted_model_flipped_bits(lab):
    return _converted(lab, lambda weights: flip(weights, weights.stat().st_size - 4096))


@case("silent")
def text_cache_entry_edited(lab):
    pdfs = fresh_folder(lab.root, "pdfs")
    os.symlink(REPO / "examples/data/climate/scirep-2021-marine-heatwave-networks.pdf", pdfs / "paper.pdf")
    lab.run("data", "inspect", pdfs, expect="succeed")
    entry = next((lab.root / "cache/text").glob("*.json"))
    record = json.loads(entry.read_text())
    record["pages"][0] = "text that was never in the PDF"
    entry.write_text(json.dumps(record))
    return lab.run("data", "inspect", pdfs, expect="succeed",
                   check=lambda out: "does not match its checksum" in out.stderr
                   and "never in the PDF" not in entry.read_text())


@case("silent")
def arrow_token_ids_flipped(lab):
    lab.train(arrow_cache=True, output_dir=str(lab.root / "a"))
    for path in (lab.root / "cache/arrow").rglob("*.arrow"):
        if path.stat().st_size > 300:
            flip(path, -200)
    return lab.run("train", lab.recipe(arrow_cache=True, output_dir=str(lab.root / "b")), expect="succeed",
                   check=lambda out: "rebuilding it" in out.stderr and lab.results(lab.root / "b")["train"]["losses"]
                   == lab.results(lab.root / "a")["train"]["losses"])


@case("silent")
def arrow_rerun_unchanged(lab):
    """Found by this re-run: every rerun rebuilt the records, warning about a file datasets had added to the cache."""
    lab.train(arrow_cache=True, output_dir=str(lab.root / "a"))
    return lab.run("train", lab.recipe(arrow_cache=True, output_dir=str(lab.root / "b")), expect="succeed",
                   check=lambda out: "not reused" not in out.stderr and lab.results(lab.root / "b")["train"]["losses"]
                   == lab.results(lab.root / "a")["train"]["losses"])


@case("silent")
def same_size_edit_mtime_restored(lab):
    lab.train(arrow_cache=True, output_dir=str(lab.root / "a"))
    target = lab.root / "notes/note0.txt"
    stamp = target.stat()
    target.write_text(target.read_text().replace("e", "a"))
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    lab.train(output_dir=str(lab.root / "memory"))  # the in-memory path reads every file on every run
    return lab.run("train", lab.recipe(arrow_cache=True, output_dir=str(lab.root / "b")), expect="succeed",
                   check=lambda _: lab.results(lab.root / "b")["data"]["sha256"] ==
                   lab.results(lab.root / "memory")["data"]["sha256"])


def _skipped(lab, *names) -> bool:
    skipped = " ".join(lab.results()["data"]["skipped"])
    return all(name in skipped for name in names)


@case("silent")
def four_identical_txt(lab):
    for n in range(4):
        (lab.root / f"notes/same-{n}.txt").write_text("The same paragraph about sea ice, saved four times.\n" * 8)
    return lab.run("train", lab.recipe(), expect="succeed", check=lambda _: _skipped(
        lab, "same-1.txt", "same-2.txt", "same-3.txt") and "same-3.txt" in (lab.run_dir() / "summary.md").read_text())


@case("silent")
def binary_valid_utf8_txt(lab):
    (lab.root / "notes/blob.txt").write_bytes(bytes(range(0, 128)) * 20)
    return lab.run("train", lab.recipe(), expect="succeed", check=lambda _: _skipped(lab, "blob.txt"))


@case("silent")
def chat_content_null(lab):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]},
            {"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]}]
    (lab.root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return lab.run("data", "inspect", lab.root / "chat.jsonl", expect="succeed",
                   check=lambda out: "line 1: turn 2 of 'messages' holds no text" in out.stdout + out.stderr)


def resume_past_damaged_checkpoint(lab, file: str) -> Outcome:
    """The last checkpoint's `file` truncated: resuming must name it and go on from the one before."""
    run = lab.train()
    truncate(run / "checkpoints/step-00000002" / file)
    return lab.run("train", lab.recipe(), "--max-steps", "3", expect="succeed", check=lambda out: "step-00000002"
                   in out.stderr and lab.results()["train"]["resumed_from"].endswith("step-00000001"))


@case("silent")
def truncated_trainer_state(lab):
    return resume_past_damaged_checkpoint(lab, "trainer_state.json")


@case("silent")
def merge_out_inside_run(lab):
    run = lab.train()
    return lab.run("merge", run, "--out", run / "adapter/merged", expect="refuse")


@case("silent")
def eval_context_huge(lab):
    return lab.run("train", lab.recipe(), "--eval-context", "100000000", expect="succeed", check=lambda out: "256"
                   in out.stderr and lab.results()["evaluation"]["scored_tokens"] <= 64)


@case("silent")
def stack_plus_plus_plus(lab):
    return lab.run("train", lab.recipe(), "--stack", "+++", expect="refuse")


@case("silent")
def yaml_duplicate_key(lab):
    path = lab.recipe()
    path.write_text(path.read_text() + "lr: 0.5\n")
    return lab.run("train", path, expect="refuse")


@case("silent")
def plan_flags_out_of_range(lab):
    return [lab.run("plan", "--model", lab.root / "base", flag, value, expect="refuse")
            for flag, value in [("--target-effective-batch", "-1"), ("--margin", "5"), ("--margin", "nan"),
                                ("--eval-batch-size", "0"), ("--probe-budget", "-1")]]


@case("silent")
def killed_merge_temp_folders(lab):
    run = lab.train()
    pid = dead_pid()
    leftovers = [lab.root / f".merged.{pid}-0badcafe.tmp", lab.root / f".merged.tmp-{pid}-0badcafe"]
    for folder in leftovers:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    return lab.run("merge", run, "--out", lab.root / "other", expect="succeed",
                   check=lambda _: not any(p.exists() for p in leftovers))


@case("silent")
def killed_arrow_build_temp_files(lab):
    lab.train(arrow_cache=True, output_dir=str(lab.root / "a"))
    cache = lab.root / "cache/arrow"
    manifest = next(cache.rglob("tokens-*.sha256.json"))
    leftovers = [manifest.parent / "tmpab12cd", manifest.with_name(f".{manifest.name}.{dead_pid()}-0badcafe.tmp"),
                 cache / "records/x/0.0.0.incomplete"]
    leftovers[2].mkdir(parents=True)
    leftovers[0].write_bytes(b"half")
    leftovers[1].write_text('{"tok')
    return lab.run("train", lab.recipe(arrow_cache=True, output_dir=str(lab.root / "b")), expect="succeed",
                   check=lambda _: not any(p.exists() for p in leftovers))


@case("silent")
def killed_during_pdf_extraction(lab):
    """kill -9 while PDFs are being extracted: the extraction workers must die with the run, not linger orphaned."""
    import signal
    import subprocess
    import sys
    import time

    pdfs = fresh_folder(lab.root, "pdfs")
    for pdf in (REPO / "examples/data/climate").glob("*.pdf"):
        os.symlink(pdf, pdfs / pdf.name)
    proc = subprocess.Popen([sys.executable, "-m", "memfit", "data", "inspect", str(pdfs)], env=lab.env(),
                            cwd=lab.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not _children(proc.pid) and proc.poll() is None:
        time.sleep(0.2)  # until a worker runs
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(3)
    left = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    command = ["memfit", "data", "inspect", "./pdfs", "(kill -9 during extraction)"]
    return Outcome(command, proc.returncode, "", "killed",
                   correct=bool(workers) and not left,
                   note=f"{len(workers)} worker(s) running at the kill, {len(left)} left 3 s later")


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{pid}\n" in status.read_text():
                found.append(int(status.parent.name))
        except OSError:
            continue
    return found
