"""Built-in memory strategies, one file each. Importing this package registers them by name."""

from .activation_offload import ActivationOffload
from .chunked_cross_entropy import ChunkedCrossEntropy
from .compile_layers import CompileLayers
from .gradient_accumulation import GradientAccumulation
from .gradient_checkpointing import GradientCheckpointing
from .liger import LigerKernels
from .lora import LoRA
from .mixed_precision import MixedPrecision
from .optimizer8bit import Optimizer8bit
from .quant4bit import Quant4bit
from .quant4bit_fused import Quant4bitFused
from .quant8bit import Quant8bit
from .tiled_mlp import TiledMLP

__all__ = ["ActivationOffload", "ChunkedCrossEntropy", "CompileLayers", "GradientAccumulation",
           "GradientCheckpointing", "LigerKernels", "LoRA", "MixedPrecision", "Optimizer8bit", "Quant4bit", "Quant4bitFused", "Quant8bit", "TiledMLP"]
