"""Issue 30's hostile cases, re-run against the CLI as a new hostile user would: the silent ones (exit 0 with a wrong
result, once: benchmarks/hostile_silent.py) and the loud ones (a traceback, an unclear line or a hang, once:
benchmarks/hostile_loud.py), each in a fresh temp folder with a tiny random Llama (benchmarks/hostile_lab.py),
classified held / loud / silent and written to benchmarks/results/hostile_cases.{json,md}: date, versions, and per
case the command, exit code, memfit's line and verdict.

    python benchmarks/hostile_cases.py                     # every case, ~10 min on 2 busy cores
    python benchmarks/hostile_cases.py --only fifo_named_txt yaml_alias_bomb   # re-plays these, keeps the others
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_loud  # noqa: E402,F401 (registers its cases)
import hostile_silent  # noqa: E402,F401
from hostile_lab import CASES, REPO, Lab, Outcome, english_note, tokenizer_for  # noqa: E402


def versions() -> dict[str, str]:
    import torch
    import transformers

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "memfit commit": commit.strip()}


def play(name: str, tokenizer, parent: Path) -> list[dict]:
    group, fn = CASES[name]
    lab = Lab.make(parent / name, tokenizer)
    started = time.time()
    try:
        outcomes = fn(lab)
    except Exception as exc:  # the case's own set-up failed: reported, never counted as held
        outcomes = Outcome(["(set-up)"], -1, traceback.format_exc(), "succeed", correct=False,
                           note=f"set-up failed: {type(exc).__name__}: {str(exc)[:300]}")
    seconds = round(time.time() - started, 1)
    played = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    rows = []
    for out in outcomes if isinstance(outcomes, list) else [outcomes]:
        rows.append({"case": name, "issue_group": group, "command": " ".join(out.command), "exit_code": out.returncode,
                     "expected": out.expect, "stderr_line": out.message.replace(str(lab.root), "."),
                     "verdict": out.verdict, "note": out.note, "seconds": seconds, "played": played})
        print(f"{rows[-1]['verdict']:6} {name}: {rows[-1]['command'][:90]} -> {out.returncode}: {out.message[:120]}",
              flush=True)
    return rows


def markdown(report: dict) -> str:
    counts = report["verdicts"]
    lines = [f"# Issue 30's hostile cases, re-run ({report['date']})", "",
             f"{len(report['cases'])} commands: **{counts.get('held', 0)} held, {counts.get('loud', 0)} loud, "
             f"{counts.get('silent', 0)} silent**. Versions: " +
             ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             "held: refused in one line with exit 2, or finished with a result that checks out; loud: a traceback, an "
             "unclear line, a hang or another exit code; silent: exit 0 with a wrong result. Re-run: "
             "`python benchmarks/hostile_cases.py`.", "",
             "| case | issue group | command | exit | memfit's line | verdict |", "|---|---|---|---|---|---|"]
    for row in report["cases"]:
        line = (row["stderr_line"] + (f" ({row['note']})" if row["note"] else "")).replace("|", "\\|")
        lines.append(f"| {row['case']} | {row['issue_group']} | `{row['command'].replace('|', '/')}` | "
                     f"{row['exit_code']} | {line[:260]} | **{row['verdict']}** |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES),
                        help="play these cases only; the other cases' rows of an existing report are kept")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    tokenizer = tokenizer_for([english_note(seed) for seed in range(20)])
    rows = []
    with tempfile.TemporaryDirectory(prefix="memfit-hostile-") as parent:
        for name in args.only or list(CASES):
            rows += play(name, tokenizer, Path(parent))
    previous = args.out / "hostile_cases.json"
    if args.only and previous.is_file():  # the re-played cases replace their rows, in the cases' order
        kept = [r for r in json.loads(previous.read_text())["cases"] if r["case"] not in args.only]
        rows = sorted(kept + rows, key=lambda r: list(CASES).index(r["case"]) if r["case"] in CASES else len(CASES))
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), "verdicts": dict(Counter(r["verdict"] for r in rows)), "cases": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile_cases.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "hostile_cases.md").write_text(markdown(report))
    print(report["verdicts"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
