"""Third-party noise, silenced at its source for the duration of a memfit command and restored after.

Only messages that are not the user's to act on are filtered, each listed below with where it comes from; `memfit -v`
shows everything. Nothing changes at import: `quiet_third_party()` is a context manager (the CLI and
examples/climate.py wrap their work in it) that adds logger filters and warnings filters and removes them again on
exit. Progress bars that third-party libraries draw for memfit's own small internal calls (datasets' "Map"/"Filter"
over a few in-memory rows, transformers' "Loading weights") are switched off around those calls by
`datasets_bars_off()` / `transformers_bars_off()`, only inside a quiet block, each restoring the library's previous
setting; memfit's own bars (train, perplexity, named Arrow passes over a large corpus, Hub downloads) stay."""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator

# logger -> the lowest level still shown while quiet. A level *filter* on the logger, not only setLevel: DeepSpeed
# sets its logger's level when it is imported, which may happen inside the command.
LOGGER_FLOORS: dict[str, int] = {
    # "Setting accelerator to CPU. If you have GPU ..." (deepspeed/accelerator/real_accelerator.py), printed on import
    # whenever accelerate or transformers probes for DeepSpeed on a machine without CUDA
    "DeepSpeed": logging.ERROR,
    # "Failed to load CPU gemm_4bit_forward from kernels-community ..." (bitsandbytes/backends/cpu/ops.py), on import
    # by peft even when no strategy uses bitsandbytes; memfit's 4-bit CPU path does not need that kernel
    "bitsandbytes": logging.ERROR,
    # "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in
    # offline mode." (kernels/_internals/hf_hub.py), the same import's kernel lookup when HF_HUB_OFFLINE is set
    "kernels": logging.ERROR,
    # "Backend impl 'liger_kernel.ops.backends._cutedsl.rope' for op 'rope' could not be imported: ... CuTe DSL ..."
    # (liger_kernel/backends/registry.py): Liger's optional CuTe-DSL / Ascend backends, absent on a plain CUDA
    # install, at the liger strategy's first op (seen on the H100 image); its Triton kernels, which memfit uses, load
    "liger_kernel": logging.ERROR,
    # "[RANK 0] Saving current state to ...", "... Model weights saved in ...", optimizer, scheduler, sampler, RNG:
    # six INFO lines per checkpoint (accelerate/accelerator.py save_state, accelerate/checkpointing.py); memfit logs
    # one line per checkpoint itself
    "accelerate": logging.WARNING,
}
# (message regex, category) of warnings.warn calls dropped while quiet
WARNING_FILTERS: list[tuple[str, type[Warning]]] = [
    # transformers 5.x deprecates `is_gradient_checkpointing`; peft reads it on every adapter set-up (not the user's)
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),
]


class _Floor(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


_open_quiet_blocks = 0  # quiet_third_party() blocks (not verbose) open in this process: the bar switches act then


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False) -> Iterator[None]:
    """Inside: the messages above are dropped (`verbose=True`: nothing is). Outside: everything as it was."""
    global _open_quiet_blocks
    if verbose:
        yield
        return
    installed: list[tuple[logging.Logger, _Floor, int, int]] = []
    _open_quiet_blocks += 1
    try:
        with warnings.catch_warnings():
            for pattern, category in WARNING_FILTERS:
                warnings.filterwarnings("ignore", message=pattern, category=category)
            for name, floor in LOGGER_FLOORS.items():
                logger, gate = logging.getLogger(name), _Floor(floor)
                before = logger.level
                logger.addFilter(gate)  # records logged on this logger itself (DeepSpeed)
                logger.setLevel(max(before, floor))  # records of its children (accelerate.accelerator, ...)
                installed.append((logger, gate, before, logger.level))
            yield
    finally:
        _open_quiet_blocks -= 1
        for logger, gate, before, ours in installed:
            logger.removeFilter(gate)
            if logger.level == ours:  # unless the library set its own level meanwhile (DeepSpeed on import)
                logger.setLevel(before)


def _unwarned(switch) -> None:
    """A library's bar switch without its "an environment variable has priority" warning: the user's variable wins."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        switch()


@contextlib.contextmanager
def datasets_bars_off() -> Iterator[None]:
    """datasets' progress bars off for one memfit call inside a quiet block, then as they were."""
    import datasets

    if not _open_quiet_blocks or datasets.are_progress_bars_disabled():
        yield
        return
    _unwarned(datasets.disable_progress_bars)
    try:
        yield
    finally:
        _unwarned(datasets.enable_progress_bars)


@contextlib.contextmanager
def transformers_bars_off() -> Iterator[None]:
    """transformers' own bars ("Loading weights") off for one memfit call inside a quiet block, then as they were.
    transformers' switch flips huggingface_hub's bars too: the hub's settings are copied before and put back after
    each flip, so a long download still shows its progress and the user's hub settings are untouched."""
    hub_bars = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (the package exports a class so named)
    from transformers.utils import logging as transformers_logging

    if not _open_quiet_blocks or not transformers_logging.is_progress_bar_enabled():
        yield
        return

    def flip(switch) -> None:
        hub_states = dict(hub_bars.progress_bar_states)
        _unwarned(switch)
        hub_bars.progress_bar_states.clear()
        hub_bars.progress_bar_states.update(hub_states)

    flip(transformers_logging.disable_progress_bar)
    try:
        yield
    finally:
        flip(transformers_logging.enable_progress_bar)
