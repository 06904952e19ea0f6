"""Multiple-choice evaluation items, in the two scoring forms.

1. The paper's last-token letter scoring (the paper, §3.1): one forward pass on `prompt`;
   compare the last-position logits of the answer tokens `letters` (each scored as
   `tokenizer(letter).input_ids[-1]`); predict the argmax; correct if it equals `gold`.
   BoolQ no/yes, PIQA 0/1, SIQA A-C, HellaSwag A-D, MMLU A-D with 5 demos.
2. lm-eval-style log-likelihood: the sum of log-probabilities of each `continuations[k]`
   after `context` (for MMLU, `context` holds the few-shot examples and the letters are the
   continuations). Not comparable to the paper's numbers; reported beside them.

The paper scores 256 items per task: random ones (seeded), except BoolQ, where an indexing
bug made it take the first 256 validation items (`order="first"`, the BoolQ default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import prompts
from .analysis import check_shots, demo_source, mmlu_demos
from .loading import load_split
from .registry import get_spec
from .sampling import first, pick

MC_TASKS = ("boolq", "piqa", "siqa", "hellaswag", "mmlu")
PAPER_SHOTS = {"mmlu": 5}  # every other task is zero-shot in the paper's evaluation


@dataclass(frozen=True)
class McItem:
    dataset: str
    split: str
    index: int  # row in the split, file order
    prompt: str  # the paper's prompt (demos included), ending in "Answer:"
    letters: tuple[str, ...]  # the paper's answer tokens, one per choice
    choices: tuple[str, ...]  # the choices' texts
    gold: int  # 0-based index of the correct choice
    context: str  # lm-eval-style context (few-shot examples included)
    continuations: tuple[str, ...]  # lm-eval-style continuation of each choice, leading space included

    @property
    def gold_letter(self) -> str:
        return self.letters[self.gold]


def _choices(dataset: str, row: dict) -> tuple[str, ...]:
    if dataset == "boolq":
        return ("no", "yes")
    if dataset == "piqa":
        return (row["sol1"], row["sol2"])
    if dataset == "siqa":
        return (row["answerA"], row["answerB"], row["answerC"])
    if dataset == "hellaswag":
        return tuple(row["endings"])
    return tuple(row["choices"])


def _loglik_context(dataset: str, row: dict, demos: list[dict]) -> str:
    if dataset != "mmlu":
        return prompts.loglik_context(dataset, row)
    shots = "".join(prompts.loglik_context("mmlu", d) + " " + prompts.LETTERS[d["answer"]] + "\n\n" for d in demos)
    return prompts.mmlu_loglik_description(row["subject"]) + shots + prompts.loglik_context("mmlu", row)


def mc_items(
    name: str,
    n: int | None = 256,
    seed: int = 0,
    *,
    split: str | None = None,
    shots: int | None = None,
    order: str | None = None,
    demo_split: str = "dev",
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> tuple[list[McItem], dict]:
    """n evaluation items of a multiple-choice task and their source.

    `order`: "random" (Random(seed)) or "first"; default as in the paper. `shots`: MMLU
    demos (default 5; both forms use the first `shots` rows of the item's subject in
    `demo_split`, "auxiliary_train" reproduces the paper's demo rows).
    """
    if name not in MC_TASKS:
        raise UserError(f"{name!r} is not a multiple-choice task (tasks: {', '.join(MC_TASKS)})")
    spec = get_spec(name)
    split = spec.split(split)
    shots = check_shots(spec, PAPER_SHOTS.get(name, 0) if shots is None else shots)
    order = order or spec.eval_order
    if order not in ("random", "first"):
        raise UserError(f"order must be 'random' or 'first', got {order!r}")
    data = load_split(name, split, data_dir=data_dir, path=path)
    what = f"{name} {split}"
    indices = first(len(data.rows), n, what) if order == "first" else pick(len(data.rows), n, seed, what)
    demo_rows: tuple[dict, ...] = ()
    source = dict(data.source)
    if shots:
        demos = load_split("mmlu", demo_split, data_dir=data_dir, path=demo_source(path))
        demo_rows = demos.rows
        source.update(demo_split=demos.split, demo_files=demos.source["files"])
    items = []
    for i in indices:
        row = data.rows[i]
        demos_i = mmlu_demos(demo_rows, row["subject"], shots) if shots else []
        prompt = prompts.mmlu_nshot(demos_i, row) if shots else spec.render(row)
        items.append(
            McItem(
                name,
                split,
                i,
                prompt,
                prompts.ANSWER_TOKENS[name],
                _choices(name, row),
                prompts.gold(name, row),
                _loglik_context(name, row, demos_i),
                prompts.loglik_choices(name, row),
            )
        )
    source.update(template="paper", shots=shots, order=order, seed=seed, samples=len(items))
    if n is not None:
        source["indices"] = indices
    return items, source
