"""launch_configs/: every file is read by accelerate's own config classes and launcher code (no GPU needed), the
DeepSpeed JSON by accelerate's DeepSpeedPlugin, and the stacks the README recommends pass memfit's checks under the
engine each file selects. One real `accelerate launch` proves cpu_2proc.yaml starts two processes in one group."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from memfit import StackError
from memfit.launch.distributed import Launch, check_stack_for_distributed
from _launch_env import CONFIGS, REPO, launch_args, launch_env, launcher

YAMLS = sorted(p.name for p in CONFIGS.glob("*.yaml"))
QLORA_SHARDABLE = "lora+quant4bit:quant_storage=bf16+bf16+gc"

# file -> (distributed_type, num_processes, num_machines, the launcher accelerate picks)
EXPECTED = {
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1, "torchrun"),
    "one_process.yaml": ("NO", 1, 1, "simple"),
    "single_gpu.yaml": ("NO", 1, 1, "simple"),
    "ddp.yaml": ("MULTI_GPU", 2, 1, "torchrun"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 2, 1, "deepspeed"),
    "deepspeed_zero3.yaml": ("DEEPSPEED", 2, 1, "deepspeed"),
    "fsdp.yaml": ("FSDP", 2, 1, "torchrun"),
    "multinode_ddp.yaml": ("MULTI_GPU", 16, 2, "torchrun"),
    "multinode_deepspeed.yaml": ("DEEPSPEED", 16, 2, "deepspeed"),
    "multinode_fsdp.yaml": ("FSDP", 16, 2, "torchrun"),
}


@pytest.fixture(autouse=True)
def _no_port_probe(monkeypatch):
    """The launcher probes main_process_port (29500 in the multinode templates): irrelevant here, and a busy port on
    the test machine must not fail a config check."""
    monkeypatch.setattr("accelerate.utils.launch.is_port_in_use", lambda port: False)


def test_every_config_is_known_here():
    assert set(YAMLS) == set(EXPECTED)


@pytest.mark.parametrize("name", YAMLS)
def test_accelerate_loads_the_config(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(CONFIGS / name))  # unknown top-level keys raise here
    assert isinstance(config, ClusterConfig)
    kind, processes, machines, _ = EXPECTED[name]
    assert (config.distributed_type.value, config.num_processes, config.num_machines) == (kind, processes, machines)
    if machines > 1:
        assert config.main_process_ip and config.main_process_port and config.machine_rank == 0


@pytest.mark.parametrize("name", YAMLS)
def test_accelerate_launcher_accepts_the_config(name, monkeypatch):
    monkeypatch.chdir(REPO)  # DeepSpeed JSON paths are relative to where `accelerate launch` runs
    args, defaults, dests = launch_args(name)
    assert launcher(args) == EXPECTED[name][3]
    # accelerate copies nested keys onto its arguments without checking them: a typo would be silently ignored
    for section, prefix in (("deepspeed_config", ""), ("fsdp_config", "fsdp_")):
        for key in getattr(defaults, section):
            assert (key if key.startswith(prefix) else prefix + key) in dests, f"{name}: unknown {section} key {key}"
    env = launch_env(name)
    if EXPECTED[name][0] == "DEEPSPEED":
        assert (REPO / env["ACCELERATE_DEEPSPEED_CONFIG_FILE"]).is_file()


def test_cpu_config_starts_two_processes_through_torchrun_not_the_single_process_launcher():
    args, _, _ = launch_args("cpu_2proc.yaml")
    assert args.multi_gpu and not args.cpu and args.num_processes == 2
    assert args.num_cpu_threads_per_process >= 1


def test_fsdp_config_is_fsdp2_per_decoder_layer():
    from accelerate.utils import FullyShardedDataParallelPlugin, patch_environment

    from _models import tiny_model

    env = launch_env("fsdp.yaml")
    assert env["FSDP_VERSION"] == "2" and env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"
    with patch_environment(**{k: v for k, v in env.items() if k.startswith(("FSDP_", "ACCELERATE_USE_FSDP"))}):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    plugin.set_auto_wrap_policy(tiny_model())  # the class name resolves in a real Llama
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    assert LlamaDecoderLayer in plugin.auto_wrap_policy.keywords["transformer_layer_cls"]


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_json_is_read_by_accelerate_and_leaves_the_optimizer_to_memfit(stage):
    pytest.importorskip("deepspeed")
    from accelerate.utils import DeepSpeedPlugin

    path = CONFIGS / f"deepspeed_zero{stage}.json"
    config = json.loads(path.read_text())
    plugin = DeepSpeedPlugin(hf_ds_config=str(path))
    assert plugin.zero_stage == stage and plugin.hf_ds_config.is_zero3() == (stage == 3)
    # memfit builds the optimizer and the LR schedule from the stack: accelerate refuses them in both places
    assert "optimizer" not in config and "scheduler" not in config
    # "auto": accelerate fills batch sizes, accumulation and precision from memfit's own settings
    assert {config[k] for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps")} == {"auto"}
    assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"


@pytest.mark.parametrize("name", ["deepspeed_zero3.yaml", "fsdp.yaml"])
def test_sharding_configs_take_the_documented_qlora_stack(name, monkeypatch):
    """The env each config gives its processes, read back by memfit: the README's QLoRA stack passes; byte-stored
    4-bit weights are refused (FSDP) or noted (ZeRO-3)."""
    monkeypatch.chdir(REPO)
    launch = Launch.from_env(launch_env(name))
    facts = {k: v for k, v in vars(launch).items() if k != "distributed_type"}
    assert launch.sharded_weights and launch.num_processes == 2
    assert check_stack_for_distributed(QLORA_SHARDABLE, launch.distributed_type, **facts) == []
    if launch.distributed_type == "FSDP":
        with pytest.raises(StackError, match="quant_storage=bf16"):
            check_stack_for_distributed("lora+q4+bf16+gc", "FSDP", **facts)
    else:
        assert check_stack_for_distributed("lora+q4+bf16+gc", "DEEPSPEED", **facts)


@pytest.mark.parametrize("name", ["ddp.yaml", "deepspeed_zero2.yaml", "cpu_2proc.yaml", "single_gpu.yaml"])
def test_replicating_configs_take_byte_stored_4bit(name, monkeypatch):
    monkeypatch.chdir(REPO)
    launch = Launch.from_env(launch_env(name))
    facts = {k: v for k, v in vars(launch).items() if k != "distributed_type"}
    assert not launch.sharded_weights
    assert check_stack_for_distributed("lora+q4+bf16+gc", launch.distributed_type, **facts) == []
    check_stack_for_distributed("lora+q4+bf16+gc+adam8", launch.distributed_type, **facts)  # allowed (DeepSpeed: a note)


@pytest.mark.parametrize("name", ["multinode_ddp.yaml", "multinode_deepspeed.yaml", "multinode_fsdp.yaml"])
@pytest.mark.parametrize("rank", [0, 1])
def test_multinode_commands_of_the_readme_give_each_machine_its_rank(name, rank, monkeypatch):
    """The per-machine flags the README gives, parsed by accelerate's launcher: machine 1 reaches machine 0's
    address, and each machine starts its 8 of the 16 processes (torchrun's nnodes / node_rank)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    monkeypatch.chdir(REPO)
    flags = ["--machine_rank", str(rank), "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
             "--num_machines", "2", "--num_processes", "16"]
    readme = (CONFIGS / "README.md").read_text()
    assert " ".join(flags[2:]) in readme and " ".join(flags[:2]) in readme
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), *flags, "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert (args.machine_rank, args.num_machines, args.num_processes) == (rank, 2, 16)
    if launcher(args) == "torchrun":
        prepare_multi_gpu_env(args)  # fills torchrun's arguments in place
        assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", rank, "8")
        endpoint = f"{getattr(args, 'master_addr', '')}:{getattr(args, 'master_port', '')}"
        assert "10.0.0.1:29500" in (endpoint, getattr(args, "rdzv_endpoint", ""))


def test_readme_names_every_config_and_only_existing_files():
    readme = (CONFIGS / "README.md").read_text()
    for name in YAMLS:
        assert name in readme, f"README does not mention {name}"
    for path in re.findall(r"--config_file (\S+)", readme):
        assert (REPO / path).is_file(), f"README points at missing {path}"


@pytest.mark.slow
def test_accelerate_launch_with_cpu_config_really_runs_two_processes(tmp_path):
    """The real launcher, nothing simulated: two processes, one gloo group (memfit.launch.distributed.partial_state)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")])}
    env.pop("ACCELERATE_USE_CPU", None)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "launch_configs/cpu_2proc.yaml",
           "launch_configs/smoke.py"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    decoder = json.JSONDecoder()  # each process writes its line at once; still, do not rely on line boundaries
    reports = [decoder.raw_decode(done.stdout, m.end())[0] for m in re.finditer(r"SMOKE ", done.stdout)]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    assert {(r["num_processes"], r["distributed_type"]) for r in reports} == {(2, "MULTI_CPU")}


def test_the_readme_main_job_launches_without_accelerates_defaults_warning(caplog, monkeypatch):
    """README's set-up command names one_process.yaml: accelerate's launcher then defaults nothing and says nothing
    (with no config file it warns, before the script starts, which values it defaulted)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    monkeypatch.chdir(REPO)
    # a user's own default config (`accelerate config`) must not hide the warning
    monkeypatch.setattr("accelerate.commands.launch.default_config_file", str(REPO / "no-such-config.yaml"))
    command = "accelerate launch --config_file launch_configs/one_process.yaml examples/climate.py"
    assert command in (REPO / "README.md").read_text()
    for flags in (command.split()[2:], ["examples/climate.py"]):
        caplog.clear()
        with caplog.at_level("WARNING", logger="accelerate.commands.launch"):
            args, _, _ = _validate_launch_command(launch_command_parser().parse_args(flags))
        warned = [r.getMessage() for r in caplog.records if "had defaults used instead" in r.getMessage()]
        assert bool(warned) == (flags[0] != "--config_file"), warned
        assert (args.num_processes, launcher(args)) == (1, "simple")
