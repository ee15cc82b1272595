"""memfit: fit the largest batch when GPU memory is the limit.

    import memfit
    stack = memfit.Stack.from_spec("lora+q4+bf16+gc+ga8+adam8")
    model = memfit.load_model("smollm2-135m", stack)
    result = memfit.train(model, stack, train_blocks, memfit.TrainConfig(micro_batch=8, max_steps=100))
"""

from . import strategies  # noqa: F401  (registers the built-in strategies)
from .training.checkpoint import CheckpointError
from .training.loop import NumericError, TrainConfig, TrainResult, train
from .core.protocol import HOOKS, Context, Strategy, StackError
from .core.registry import available as available_strategies
from .core.registry import register_strategy
from .core.stack import Stack
from .runtime import configure_runtime

__version__ = "0.1.0"


# Imported when first asked for, so `import memfit.training.loop` (every training rank) does not pull in the model
# loader, the memory model or the end-to-end pipeline (pypdf/datasets).
_LAZY = {"FinetuneConfig": "recipes.finetune", "run_finetune": "recipes.finetune", "MemoryEstimate": "plan.memory",
         "estimate": "plan.memory", "ModelError": "models", "load_config": "models", "load_model": "models",
         "load_tokenizer": "models", "shipped_configs": "models", "parse_run_config": "cli.train"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'memfit' has no attribute {name!r}")

__all__ = ["CheckpointError", "FinetuneConfig", "HOOKS", "Context", "MemoryEstimate", "ModelError", "NumericError", "Stack", "StackError", "Strategy",
           "TrainConfig", "TrainResult", "available_strategies", "configure_runtime", "estimate", "load_config", "load_model",
           "load_tokenizer", "parse_run_config", "register_strategy", "run_finetune", "shipped_configs", "train"]
