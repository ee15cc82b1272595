"""memfit: fit the largest batch when GPU memory is the limit.

    import memfit
    stack = memfit.Stack.from_spec("lora+q4+bf16+gc+ga8+adam8")
    model = memfit.load_model("smollm2-135m", stack)
    result = memfit.train(model, stack, train_blocks, memfit.TrainConfig(micro_batch=8, max_steps=100))
"""

__version__ = "0.1.0"

# Every public name is imported when first asked for: `import memfit` (and `memfit --help`, `--version`) must not
# pull in torch, transformers or the data pipeline. The built-in strategies register when the registry is first
# read (memfit/core/registry.py imports memfit.strategies).
_LAZY = {"CheckpointError": "training.checkpoint", "NumericError": "training.loop", "TrainConfig": "training.config",
         "TrainResult": "training.loop", "train": "training.loop", "HOOKS": "core.protocol",
         "Context": "core.protocol", "Strategy": "core.protocol", "StackError": "core.protocol",
         "register_strategy": "core.registry", "Stack": "core.stack", "configure_runtime": "runtime",
         "FinetuneConfig": "recipes.finetune", "run_finetune": "recipes.finetune", "MemoryEstimate": "plan.memory",
         "estimate": "plan.memory", "ModelError": "models", "load_config": "models", "load_model": "models",
         "load_tokenizer": "models", "shipped_configs": "models", "parse_run_config": "cli.train",
         "MemfitError": "core.errors"}
_RENAMED = {"available_strategies": ("core.registry", "available")}


def __getattr__(name: str):
    import importlib

    if name in _LAZY or name in _RENAMED:
        module, attribute = _RENAMED.get(name, (_LAZY.get(name), name))
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module 'memfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = sorted([*_LAZY, *_RENAMED])
