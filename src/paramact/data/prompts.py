"""The paper's prompt templates, character for character (the paper, §2, §3.1; official code
`lib/dataset/*.py`), and lm-eval-style contexts for log-likelihood scoring.

Pure functions of canonical rows (see formats.py / corpora.py); no I/O, no randomness
except the explicit `random.Random` handed to `gsm8k_demos`.
"""

from __future__ import annotations

import random
import re

LETTERS = ("A", "B", "C", "D")
CALIBRATION_SEPARATOR = "\n###\n"  # joins items in calibration sequences and MMLU few-shot demos


def boolq(row: dict) -> str:
    return row["passage"] + "\nQuestion: " + row["question"] + "?\nAnswer:"


def mmlu(row: dict) -> str:
    out = "The following are multiple choice questions (with answers) about " + row["subject"] + ".\n\n"
    out += row["question"] + "\n"
    for letter, choice in zip(LETTERS, row["choices"], strict=True):
        out += letter + ". " + choice + "\n"
    return out + "Answer:"


def mmlu_nshot(demos: list[dict], row: dict) -> str:
    """The paper's MMLU k-shot prompt: each demo with its answer letter, then "\\n###\\n", then the item."""
    return "".join(mmlu(d) + LETTERS[d["answer"]] + CALIBRATION_SEPARATOR for d in demos) + mmlu(row)


def siqa(row: dict) -> str:
    return (
        "The following are multiple choice questions (with answers) about social interaction.\n"
        + row["context"]
        + "\n"
        + row["question"]
        + "\n"
        + "A. "
        + row["answerA"]
        + "\nB. "
        + row["answerB"]
        + "\nC. "
        + row["answerC"]
        + "\nAnswer:"
    )


def piqa(row: dict) -> str:
    return "Question:" + row["goal"] + "\n0. " + row["sol1"] + "\n1. " + row["sol2"] + "\nAnswer:"


def hellaswag(row: dict) -> str:
    out = (
        "The following are multiple choice to finish a sentence (with answer) about " + row["activity_label"] + ".\n\n"
    )
    out += row["ctx"] + "...\nHow does the description likely end?\n\n"
    for letter, ending in zip(LETTERS, row["endings"], strict=True):
        out += letter + ". " + ending + "\n\n"
    return out + "Answer:"


def humaneval(row: dict) -> str:
    return row["prompt"]


def text(row: dict) -> str:
    return row["text"]


def pair_first(row: dict) -> str:
    return row["a"]


def ted_en(row: dict) -> str:
    return row["en"]


# The 8 chain-of-thought exemplars of Wei et al. (2022), as in the official gsm8k.py: (question, chain, answer)
GSM8K_EXEMPLARS = (
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
        "there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. "
        "So there must have been 21 - 15 = 6.",
        "6",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.",
        "5",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. "
        "After eating 35, they had 74 - 35 = 39.",
        "39",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. "
        "How many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8.",
        "8",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",  # noqa: E501 (the paper's text)
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9.",
        "9",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, "
        "from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. "
        "So 5 * 4 = 20 computers were added. 9 + 20 is 29.",
        "29",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. "
        "How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
        "After losing 2 more, he had 35 - 2 = 33 golf balls.",
        "33",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. "
        "So she has 23 - 15 dollars left. 23 - 15 is 8.",
        "8",
    ),
)


def gsm8k_demos(shots: int, rng: random.Random) -> str:
    """`shots` exemplars in a random order (a shuffle of all 8, then the first `shots`, as the paper's code)."""
    order = list(range(len(GSM8K_EXEMPLARS)))
    rng.shuffle(order)
    return "".join(
        "Q: " + q + "\nA: " + chain + " The answer is " + ans + ".\n\n"
        for q, chain, ans in (GSM8K_EXEMPLARS[i] for i in order[:shots])
    )


def gsm8k(row: dict, demos: str = "") -> str:
    return demos + "Q: " + row["question"] + "\nA: "


# ---- lm-eval-style contexts and continuations (log-likelihood of each choice) ----


def _hellaswag_clean(text: str) -> str:
    """lm-eval's HellaSwag preprocessing (a no-op on the llama.cpp text format, already cleaned)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def loglik_context(dataset: str, row: dict) -> str:
    if dataset == "boolq":
        return row["passage"] + "\nQuestion: " + row["question"] + "?\nAnswer:"
    if dataset == "piqa":
        return "Question: " + row["goal"] + "\nAnswer:"
    if dataset == "siqa":
        return "Q: " + row["context"] + " " + row["question"] + "\nA:"
    if dataset == "hellaswag":
        if row.get("ctx_a") is not None and row.get("ctx_b") is not None:
            ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
        else:
            ctx = row["ctx"]
        return _hellaswag_clean(row["activity_label"] + ": " + ctx)
    if dataset == "mmlu":
        return (
            row["question"].strip()
            + "\n"
            + "".join(f"{ltr}. {c}\n" for ltr, c in zip(LETTERS, row["choices"], strict=True))
            + "Answer:"
        )
    raise KeyError(dataset)


def mmlu_loglik_description(subject: str) -> str:
    return "The following are multiple choice questions (with answers) about " + subject.replace("_", " ") + ".\n\n"


def loglik_choices(dataset: str, row: dict) -> tuple[str, ...]:
    """The continuations scored after the context, each with lm-eval's one-space target delimiter."""
    if dataset == "boolq":
        texts = ("no", "yes")
    elif dataset == "piqa":
        texts = (row["sol1"], row["sol2"])
    elif dataset == "siqa":
        texts = (row["answerA"], row["answerB"], row["answerC"])
    elif dataset == "hellaswag":
        texts = tuple(_hellaswag_clean(e) for e in row["endings"])
    elif dataset == "mmlu":
        texts = LETTERS
    else:
        raise KeyError(dataset)
    return tuple(" " + t for t in texts)


# ---- answers: the paper's answer tokens (last-token letter scoring) ----

ANSWER_TOKENS = {
    "boolq": ("no", "yes"),
    "piqa": ("0", "1"),
    "siqa": ("A", "B", "C"),
    "hellaswag": LETTERS,
    "mmlu": LETTERS,
}


def gold(dataset: str, row: dict) -> int:
    """0-based index of the correct choice (SIQA's 1-based release labels are shifted here)."""
    if dataset == "boolq":
        return int(row["label"])
    if dataset == "siqa":
        return row["label"] - 1
    if dataset in ("piqa", "hellaswag"):
        return row["label"]
    if dataset == "mmlu":
        return row["answer"]
    raise KeyError(dataset)


def answer(dataset: str, row: dict) -> str:
    """What follows the prompt when an item is shown with its answer (calibration, demos)."""
    if dataset in ANSWER_TOKENS:
        return ANSWER_TOKENS[dataset][gold(dataset, row)]
    if dataset == "gsm8k":
        return row["answer"]
    if dataset == "humaneval":
        return row["canonical_solution"]
    return ""
