"""Built-in memory strategies, one file each. `register_builtins()` imports them, which registers them by name (the
registry calls it on its first read); the classes are also importable from here (`from memfit.strategies import LoRA`),
each module loaded on first use, so `memfit.strategies.defaults` can be read without torch."""

import importlib

BUILTINS = {"ActivationOffload": "activation_offload", "ChunkedCrossEntropy": "chunked_cross_entropy",
            "CompileLayers": "compile_layers", "GradientAccumulation": "gradient_accumulation",
            "GradientCheckpointing": "gradient_checkpointing", "LigerKernels": "liger", "LoRA": "lora",
            "MixedPrecision": "mixed_precision", "Optimizer8bit": "optimizer8bit", "Quant4bit": "quant4bit",
            "Quant4bitFused": "quant4bit_fused", "Quant8bit": "quant8bit", "TiledMLP": "tiled_mlp"}
__all__ = [*BUILTINS, "register_builtins"]


def register_builtins() -> None:
    for module in dict.fromkeys(BUILTINS.values()):
        importlib.import_module(f"{__name__}.{module}")


def __getattr__(name: str):
    if name in BUILTINS:
        return getattr(importlib.import_module(f"{__name__}.{BUILTINS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
