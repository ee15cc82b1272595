"""Built-in memory strategies, one file each. Importing this package registers them by name."""

from .gradient_accumulation import GradientAccumulation
from .gradient_checkpointing import GradientCheckpointing
from .lora import LoRA
from .mixed_precision import MixedPrecision
from .optimizer8bit import Optimizer8bit
from .quant4bit import Quant4bit
from .quant8bit import Quant8bit

__all__ = ["GradientAccumulation", "GradientCheckpointing", "LoRA", "MixedPrecision", "Optimizer8bit", "Quant4bit",
           "Quant8bit"]
from .activation_offload import ActivationOffload  # noqa: E402
from .chunked_cross_entropy import ChunkedCrossEntropy  # noqa: E402
from .tiled_mlp import TiledMLP  # noqa: E402

__all__ += ["ActivationOffload", "ChunkedCrossEntropy", "TiledMLP"]
