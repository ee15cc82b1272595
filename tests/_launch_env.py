"""What accelerate's launcher would do with a launch_configs/ file: its parsed arguments, the launcher branch it
takes and the environment it gives the training processes (nothing is started). Shared by tests/launch/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "launch_configs"


def launch_args(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "train.py"])
    dests = set(vars(args))
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults, dests


def launcher(args) -> str:
    """The branch accelerate.commands.launch.launch_command takes."""
    if args.use_deepspeed and not args.cpu:
        return "deepspeed"
    if (args.use_fsdp or args.multi_gpu) and not args.cpu:
        return "torchrun"
    return "simple"


def launch_env(name: str) -> dict[str, str]:
    """The environment accelerate's launcher would give the training processes (nothing is started)."""
    from accelerate.utils.launch import (prepare_deepspeed_cmd_env, prepare_multi_gpu_env,
                                         prepare_simple_launcher_cmd_env)

    args, _, _ = launch_args(name)
    kind = launcher(args)
    if kind == "deepspeed":
        args.deepspeed_fields_from_accelerate_config = ""
        env = prepare_deepspeed_cmd_env(args)[1]
        env["WORLD_SIZE"] = str(args.num_processes)  # what torchrun adds for each process
    elif kind == "torchrun":
        env = prepare_multi_gpu_env(args)
        env["WORLD_SIZE"] = str(args.num_processes)  # what torchrun adds for each process
    else:
        env = prepare_simple_launcher_cmd_env(args)[1]
    return env
