"""`memfit estimate --device`: cuda and cpu print different tables (the device's own terms), each says its compute
dtype, and the dominating-term line names its share and a strategy the registry holds."""
from __future__ import annotations

import json
import re

from _models import tiny_config

from memfit import available_strategies
from memfit.cli import main


def test_cpu_and_cuda_estimates_differ_and_name_the_strategy_that_lowers_the_dominating_term(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(tiny_config().to_json_string())
    said = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        assert main(["estimate", "--model-config", str(config), "--device", device, "--stack", "lora",
                     "--seq-len", "256", "--micro-batch", "1024", "--json", str(out)]) == 0
        said[device] = (capsys.readouterr().out, json.loads(out.read_text()))
    (cpu_text, cpu), (cuda_text, cuda) = said["cpu"], said["cuda"]
    assert "cuda_context" in cuda_text and "cuda_context" not in cpu_text
    assert "workspace" in cuda_text and "workspace" not in cpu_text
    assert cpu["compute_dtype"] == cuda["compute_dtype"] == "float32" and "process RSS about" in cpu_text
    assert set(cuda["breakdown_gib"]) - set(cpu["breakdown_gib"]) == {"workspace", "cuda_context"}
    for text, record in ((cpu_text, cpu), (cuda_text, cuda)):
        line = next(row for row in text.splitlines() if row.startswith("dominated by "))
        match = re.match(r"dominated by (\w+): (\d+) % of [\d.]+ GiB at micro-batch 1024; (\w+) (removes|lowers) it",
                         line)
        assert match, line
        # at 1024 sequences the activations outweigh cuda's fixed ~1 GiB (context and workspace) too
        assert match.group(1) == record["dominating_term"] == "activations"
        assert match.group(3) in available_strategies() and record["remedy"].startswith(match.group(3))
        share = 100 * record["breakdown_gib"]["activations"] / record["breakdown_gib"]["total"]
        assert int(match.group(2)) == round(share)
