"""The device's own memory terms: a cuda estimate and a cpu estimate of one stack differ by exactly the terms
memfit/plan/device_terms.py documents, and host memory is the device on a CPU."""
from __future__ import annotations

import pytest
import torch

from _models import tiny_config

from memfit.core.stack import Stack
from memfit.plan.device_terms import CUDA_CONTEXT_GIB, device_estimate
from memfit.plan.memory import GiB, estimate


def _both(spec: str, seq_len: int = 64):
    stack = Stack.coerce(spec)
    return [device_estimate(stack, tiny_config(), seq_len, stack.context(device))
            for device in (torch.device("cuda", 0), "cpu")]


@pytest.mark.parametrize("spec", ["lora", "bf16+lora+gc", "lora+cce"])
def test_cuda_and_cpu_differ_by_the_documented_terms(spec):
    cuda, cpu = _both(spec)
    plain = estimate(Stack.coerce(spec), tiny_config(), 64, Stack.coerce(spec).context("cpu"))
    cuda_terms, cpu_terms = cuda.breakdown(4), cpu.breakdown(4)
    assert set(cuda_terms) - set(cpu_terms) == {"workspace", "cuda_context"} and set(cpu_terms) <= set(cuda_terms)
    assert cuda_terms["cuda_context"] == pytest.approx(CUDA_CONTEXT_GIB)
    assert cuda_terms["workspace"] * GiB == plain.term("workspace")  # the baseline's calibrated workspace, on cuda only
    for name in cpu_terms:
        if name != "total":
            assert cuda_terms[name] == pytest.approx(cpu_terms[name]), name
    assert cuda_terms["total"] - cpu_terms["total"] == pytest.approx(
        CUDA_CONTEXT_GIB + plain.term("workspace") / GiB)
    assert cpu.max_micro_batch(GiB) >= cuda.max_micro_batch(GiB)


def test_offloaded_activations_count_on_a_cpu_whose_host_is_the_device():
    cuda, cpu = _both("lora+gc+offload")
    assert cuda.terms["offloaded_inputs"].kind == "host" and "host:offloaded_inputs" in cuda.breakdown(2)
    assert cpu.terms["offloaded_inputs"].kind == "token" and cpu.breakdown(2)["offloaded_inputs"] > 0
