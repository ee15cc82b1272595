"""Collect benchmarks/multi_gpu.sh's runs: OUT/<config>/smoke_rank<r>.json (launch_configs/smoke.py), OUT/<config>.log
and OUT/<config>.rc into OUT/multi_gpu.json and the Markdown table OUT/multi_gpu.md.

    python benchmarks/multi_gpu_report.py OUT

A config whose processes never wrote a report still gets a row: its exit code and the last error line of its log.
tokens/s is memfit's TrainResult.tokens_per_s: predicted tokens of all processes together (the loop sums each window's
tokens over ranks) per wall-clock second, after the first (warm-up) step; every rank computes it, rank 0's is shown.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ORDER = ["ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"]
ERROR = re.compile(r"^\s*(?:\[rank\d+\]:\s*)?((?:[\w.]+(?:Error|Exception|Interrupt)|Killed|torch\.\w+Error)\b.*)$")


def _rc(out: Path, name: str):
    """The launch's exit code, "skipped" (no time left), or None (launched by hand, no .rc file)."""
    text = (out / f"{name}.rc").read_text().strip() if (out / f"{name}.rc").exists() else ""
    return int(text) if text.lstrip("-").isdigit() else (text or None)


def _error_line(log: Path, timed_out: bool) -> str | None:
    """The last Python exception line of the log (the root cause is usually the last one a rank raised); after a
    timeout, the last progress line of smoke.py instead of the launcher's SIGTERM exception."""
    if not log.exists():
        return None
    lines = log.read_text(errors="replace").splitlines()
    hits = [m.group(1).strip() for line in lines if (m := ERROR.match(line)) and "SignalException" not in line]
    if timed_out:
        phases = [line.split("SMOKE-PHASE", 1)[1].strip() for line in lines if "SMOKE-PHASE" in line]
        hits = hits or [f"last progress: {phases[-1]}" if phases else "no progress line"]
    return hits[-1][:300] if hits else None


def _rank_reports(out: Path, name: str) -> list[dict]:
    """Each rank's smoke_rank<r>.json, or, where those did not come back (the device tool returns a limited number
    of files), the same JSON from the `SMOKE {...}` lines of the launch log."""
    files = list((out / name).glob("smoke_rank*.json"))
    if files:
        return [json.loads(p.read_text()) for p in files]
    log = out / f"{name}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [json.loads(line[len("SMOKE "):]) for line in lines if line.startswith("SMOKE {")]


def collect(out: Path) -> list[dict]:
    names = {p.parent.name for p in out.glob("*/smoke_rank*.json")} | {p.stem for p in out.glob("*.log")}
    names = [n for n in ORDER if n in names] + sorted(n for n in names - set(ORDER) if not n.startswith("_"))
    rows = []
    for name in names:
        ranks = sorted(_rank_reports(out, name), key=lambda r: r["rank"])
        rc, main = _rc(out, name), (ranks[0] if ranks else {})
        expected = main.get("num_processes", len(ranks))
        errors = [r["error"] for r in ranks if r.get("error")]
        ran = rc in (0, None) and len(ranks) == expected and not errors and "micro_batch" in main
        ok, error = ran and main.get("adapter_reloads") is True, None
        if ran and not ok:
            error = "the saved adapter did not reload (or has all-zero lora_B)"
        elif rc == "skipped":
            error = "skipped: no time left before multi_gpu.sh's DEADLINE_S"
        elif not ran:
            timed_out = rc in (124, 137)
            error = (errors[0] if errors else None) or _error_line(out / f"{name}.log", timed_out) or (
                f"exit {rc}, {len(ranks)}/{expected} rank reports")
            if timed_out:
                error = f"timed out (exit {rc}); {error}"
        peaks = [r["peak_gib"] for r in ranks if r.get("peak_gib") is not None]
        rows.append({
            "config": name, "ok": ok, "exit_code": rc, "error": error, "ranks_reported": len(ranks),
            "distributed_type": main.get("distributed_type"), "zero_stage": main.get("zero_stage"),
            "num_processes": main.get("num_processes"), "model": main.get("model"), "stack": main.get("stack"),
            "seq": main.get("seq"), "device_name": main.get("device_name"),
            "plan_micro_batch": main.get("plan_micro_batch"), "plan_probes": main.get("plan_probes"),
            "plan_search_s": main.get("plan_search_s"), "plan_predicted_max": main.get("plan_predicted_max"),
            "micro_batch": main.get("micro_batch"), "grad_accum": main.get("grad_accum"),
            "effective_batch": main.get("effective_batch"), "backoffs": main.get("backoffs"),
            "peak_gib_max": max(peaks) if peaks else None, "peak_gib_per_rank": peaks,
            "peak_source": main.get("peak_source"), "tokens_per_s": main.get("tokens_per_s"),
            "train_s": main.get("train_s"), "load_s": main.get("load_s"), "steps": len(main.get("losses") or []),
            "loss_first": main.get("loss_first"), "loss_last": main.get("loss_last"),
            "weights_held": [r.get("weights_held") for r in ranks], "held_4bit": [r.get("held_4bit") for r in ranks],
            "adapter_reloads": main.get("adapter_reloads"), "notes": main.get("notes"),
            "versions": main.get("versions")})
    return rows


def _fmt(x, spec: str = "") -> str:
    return "-" if x is None else format(x, spec)


def markdown(rows: list[dict]) -> str:
    first = next((r for r in rows if r["model"]), {})
    lines = [f"Model `{first.get('model')}` (random weights), stack `{first.get('stack')}`, seq {first.get('seq')}, "
             f"device {first.get('device_name')}. Peak: {first.get('peak_source')}, the largest rank's. tokens/s: all "
             f"processes together (memfit's TrainResult.tokens_per_s, after the first step).", "",
             "| config | engine | processes | micro-batch (planned / trained) | accum | effective batch | "
             "peak GiB per GPU (max over ranks) | tokens/s (all GPUs) | train s | loss first -> last | weights held "
             "| reload ok | error |", "|" + "---|" * 13]
    for r in rows:
        engine = (r["distributed_type"] or "-") + (f" ZeRO-{r['zero_stage']}" if r["zero_stage"] else "")
        held = "/".join(_fmt(h) for h in r["weights_held"]) or "-"
        lines.append(" | ".join([
            f"| {r['config']}", engine, _fmt(r["num_processes"]),
            f"{_fmt(r['plan_micro_batch'])} / {_fmt(r['micro_batch'])}", _fmt(r["grad_accum"]),
            _fmt(r["effective_batch"]), _fmt(r["peak_gib_max"], ".2f"), _fmt(r["tokens_per_s"], ",.0f"),
            _fmt(r["train_s"], ".1f"), f"{_fmt(r['loss_first'], '.4f')} -> {_fmt(r['loss_last'], '.4f')}", held,
            {True: "yes", False: "NO", None: "-"}[r["adapter_reloads"]], (r["error"] or "").replace("|", "/")]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    rows = collect(out)
    (out / "multi_gpu.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows)
    (out / "multi_gpu.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
