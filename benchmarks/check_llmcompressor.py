"""Apply a `paramact schedule --format llmcompressor` recipe with llm-compressor itself and compare
each decoder block's achieved sparsity with the recipe's.

llm-compressor pins its own transformers range (0.14.0.1: transformers <= 5.17, paramact needs
>= 5.24), so this runs in a separate environment that has llm-compressor and not paramact:

    python -m venv /tmp/llmc && /tmp/llmc/bin/pip install torch==2.13.0 llmcompressor==0.14.0.1
    paramact schedule --model smollm2-135m --schedule atp --sparsity 0.6 --format llmcompressor \
        --method sparsegpt --out /tmp/recipe
    /tmp/llmc/bin/python benchmarks/check_llmcompressor.py ~/.cache/paramact/models/smollm2-135m \
        /tmp/recipe/recipe.yaml

Calibration: `--samples` sequences of `--seqlen` random token ids (the check is about which
fraction of each block is pruned, not about quality). The blocks are the modules the recipe's own
`targets` pattern matches, in the model's order. Prints the largest difference between a block's
achieved sparsity (zeros over the weights of its Linear layers) and the recipe's value; exit code 1
when it exceeds `--tolerance`, 2 when the recipe does not fit the model.
"""

from __future__ import annotations

import argparse
import re
import sys

import torch
import yaml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a Hugging Face model folder (e.g. paramact's converted SmolLM2)")
    ap.add_argument("recipe", help="recipe.yaml written by `paramact schedule --format llmcompressor`")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--tolerance", type=float, default=0.01)
    args = ap.parse_args()

    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    with open(args.recipe) as f:
        (stage,) = yaml.safe_load(f).values()
    ((name, modifier),) = stage["sparsity_modifiers"].items()
    want = modifier["sparsity"]
    (target,) = modifier["targets"]  # "re:<pattern>" over module names: the decoder blocks, in order

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    blocks = [m for n, m in model.named_modules() if re.fullmatch(target.removeprefix("re:"), n)]
    if len(blocks) != len(want):
        msg = f"the recipe's targets match {len(blocks)} modules of the model, not its {len(want)} sparsities"
        print(msg, file=sys.stderr)
        return 2
    n, seqlen = args.samples, args.seqlen
    ids = torch.randint(0, model.config.vocab_size, (n, seqlen), generator=torch.Generator().manual_seed(0))
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * seqlen] * n})
    oneshot(model=model, dataset=ds, recipe=args.recipe, num_calibration_samples=n, max_seq_length=seqlen)

    got = []
    for block in blocks:
        linears = [m.weight for m in block.modules() if isinstance(m, torch.nn.Linear)]
        got.append(sum(int((w == 0).sum()) for w in linears) / sum(w.numel() for w in linears))
    err = max(abs(a - b) for a, b in zip(got, want, strict=True))
    print(f"{name}: {len(got)} blocks, largest |achieved - recipe| sparsity {err:.2e}")
    return 0 if err <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
