"""Base-model perplexity and bits/byte of the embedded SmolLM2-135M on the climate corpus's test documents.

    python benchmarks/base_perplexity.py ../shared/corpus/climate benchmarks/results/smollm2_base_perplexity.json
"""

import json
import sys
import time
from pathlib import Path

import torch

import memfit
from memfit.data import build_datasets, extract_pdfs
from memfit.evaluation import perplexity
from memfit.plan.planner import versions


def main(pdf_dir: str, out: str) -> None:
    model = memfit.load_model("smollm2-135m", "none")
    tok = memfit.load_tokenizer("smollm2-135m")
    bundle = build_datasets(extract_pdfs(pdf_dir), tok, block_size=512, test_fraction=0.2, seed=0)
    rows = []
    for context, stride in ((512, 256), (2048, 1024)):
        t = time.perf_counter()
        res = perplexity(model, bundle.test, context_length=context, stride=stride, batch_size=4, progress=True)
        rows.append({**res.to_dict(), "seconds": time.perf_counter() - t})
        print(rows[-1], flush=True)
    Path(out).write_text(json.dumps(
        {"model": "SmolLM2-135M-Instruct (embedded GGUF, dequantized, fp32)", "device": "cpu",
         "date": time.strftime("%Y-%m-%d"), "test_documents": list(bundle.test["name"]),
         "versions": versions(), "results": rows, "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
