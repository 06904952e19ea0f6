"""Templates: the paper's exact strings (the paper, §2, §3.1), GSM8K demos, lm-eval-style forms.
Rows here are hand-written or synthetic fixtures; expected strings are typed from the paper."""

from __future__ import annotations

import random

import pytest

from data_helpers import FIXTURES, synthetic_dir
from paramact.data import prompts
from paramact.data.analysis import analysis_prompts
from paramact.data.loading import load_split


class NoShuffle(random.Random):
    def shuffle(self, x):  # keep the exemplars in their listed order
        return None


DEMO_1 = (
    "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
    "done, there will be 21 trees. How many trees did the grove workers plant today?\n"
    "A: There are 15 trees originally. Then there were 21 trees after some more were planted. "
    "So there must have been 21 - 15 = 6. The answer is 6.\n\n"
)
DEMO_2 = (
    "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\n"
    "A: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.\n\n"
)
DEMO_8 = (
    "Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\n"
    "A: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. "
    "So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.\n\n"
)


def test_gsm8k_demos_exact_text():
    assert prompts.gsm8k_demos(2, NoShuffle()) == DEMO_1 + DEMO_2
    assert prompts.gsm8k_demos(0, NoShuffle()) == ""
    all8 = prompts.gsm8k_demos(8, NoShuffle())
    assert all8.startswith(DEMO_1 + DEMO_2) and all8.endswith(DEMO_8) and all8.count("The answer is") == 8


def test_gsm8k_three_shot_prompt_structure():
    row = {"question": "Tom has 2 apples and buys 3 more. How many apples does he have?", "answer": "2+3=5\n#### 5"}
    text = prompts.gsm8k(row, prompts.gsm8k_demos(3, random.Random(5)))
    demos, tail = text[: -len("Q: " + row["question"] + "\nA: ")], text[-len("Q: " + row["question"] + "\nA: ") :]
    assert tail == "Q: Tom has 2 apples and buys 3 more. How many apples does he have?\nA: "
    blocks = [b + "\n\n" for b in demos.split("\n\n") if b]
    exemplars = {"Q: " + q + "\nA: " + c + " The answer is " + a + ".\n\n" for q, c, a in prompts.GSM8K_EXEMPLARS}
    assert len(blocks) == 3 and len(set(blocks)) == 3 and set(blocks) <= exemplars


def test_gsm8k_demos_follow_the_seed_and_item(tmp_path):
    root = synthetic_dir(tmp_path, {})
    (root / "gsm8k").mkdir()
    (root / "gsm8k" / "test.jsonl").write_text(
        "".join(f'{{"question": "Synthetic question {i}?", "answer": "x\\n#### {i}"}}\n' for i in range(12))
    )
    a, _ = analysis_prompts("gsm8k", 5, seed=3, shots=3, data_dir=root)
    b, _ = analysis_prompts("gsm8k", 5, seed=3, shots=3, data_dir=root)
    c, _ = analysis_prompts("gsm8k", 5, seed=4, shots=3, data_dir=root)
    assert a == b and a != c
    # an item's demos depend on (seed, item), not on which other items were drawn
    all_items, src = analysis_prompts("gsm8k", None, seed=3, shots=3, data_dir=root)
    _, src_a = analysis_prompts("gsm8k", 5, seed=3, shots=3, data_dir=root)
    assert [all_items[i] for i in src_a["indices"]] == a
    assert src["shots"] == 3


def test_boolq_template_hand_row():
    row = {"passage": "Synthetic -- Water is wet.", "question": "is water wet", "label": True}
    assert prompts.boolq(row) == "Synthetic -- Water is wet.\nQuestion: is water wet?\nAnswer:"


def test_mmlu_five_shot_format():
    demos = [{"subject": "s", "question": f"q{i}", "choices": ("a", "b", "c", "d"), "answer": i % 4} for i in range(5)]
    item = {"subject": "s", "question": "item?", "choices": ("w", "x", "y", "z"), "answer": 1}
    head = "The following are multiple choice questions (with answers) about s.\n\n"
    expected = "".join(head + f"q{i}\nA. a\nB. b\nC. c\nD. d\nAnswer:" + "ABCDA"[i] + "\n###\n" for i in range(5))
    expected += head + "item?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    assert prompts.mmlu_nshot(demos, item) == expected


def test_hellaswag_official_jsonl_fixture(tmp_path):
    data = load_split("hellaswag", "validation", path=FIXTURES / "hellaswag_val_synthetic.jsonl")
    assert len(data.rows) == 4 and [r["label"] for r in data.rows] == [2, 0, 1, 3]
    assert "notes" not in data.source  # the official format needs no caveat
    assert prompts.hellaswag(data.rows[0]) == (
        "The following are multiple choice to finish a sentence (with answer) about Juggling balls.\n\n"
        "A clown stands on a small stage holding three red balls. he...\n"
        "How does the description likely end?\n\n"
        "A. eats the balls one by one.\n\n"
        "B. paints the stage blue.\n\n"
        "C. tosses the balls into the air and catches them in turn.\n\n"
        "D. falls asleep on a chair.\n\n"
        "Answer:"
    )
    # the official file name is found in a data directory too
    root = synthetic_dir(tmp_path, {"hellaswag/hellaswag_val.jsonl": "hellaswag_val_synthetic.jsonl"})
    assert load_split("hellaswag", "validation", data_dir=root).rows == data.rows


def test_lm_eval_forms():
    rows = load_split("hellaswag", "validation", path=FIXTURES / "hellaswag_val_synthetic.jsonl").rows
    wikihow = rows[1]
    assert prompts.loglik_context("hellaswag", wikihow) == (
        "Home and Garden: How to water a fern. Check the soil daily. press a finger"
    )
    assert (
        prompts.loglik_choices("hellaswag", wikihow)[0]
        == " into the soil up to the first knuckle. If it feels dry, water it."
    )
    assert prompts.loglik_context("hellaswag", rows[0]) == (
        "Juggling balls: A clown stands on a small stage holding three red balls. He"
    )
    siqa = {
        "context": "Kim baked bread.",
        "question": "Why did Kim do this?",
        "answerA": "to eat",
        "answerB": "to sleep",
        "answerC": "to run",
        "label": 1,
    }
    assert prompts.loglik_context("siqa", siqa) == "Q: Kim baked bread. Why did Kim do this?\nA:"
    assert prompts.loglik_choices("siqa", siqa) == (" to eat", " to sleep", " to run")
    piqa = {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "freeze it", "label": 0}
    assert prompts.loglik_context("piqa", piqa) == "Question: Open a jar\nAnswer:"
    assert prompts.loglik_choices("boolq", {}) == (" no", " yes")
    mmlu = {"subject": "high_school_physics", "question": " Why? ", "choices": ("1", "2", "3", "4"), "answer": 0}
    assert prompts.mmlu_loglik_description("high_school_physics") == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
    )
    assert prompts.loglik_context("mmlu", mmlu) == "Why?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"


@pytest.mark.parametrize(
    "dataset,row,gold,answer",
    [
        ("boolq", {"label": False}, 0, "no"),
        ("siqa", {"label": 3}, 2, "C"),
        ("piqa", {"label": 1}, 1, "1"),
        ("hellaswag", {"label": 3}, 3, "D"),
        ("mmlu", {"answer": 0}, 0, "A"),
    ],
)
def test_gold_and_answer_tokens(dataset, row, gold, answer):
    assert prompts.gold(dataset, row) == gold
    assert prompts.answer(dataset, row) == answer
