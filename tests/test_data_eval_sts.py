"""Multiple-choice evaluation items (letter scoring + log-likelihood) and sentence pairs."""

from __future__ import annotations

import pytest

from data_helpers import FIXTURES, shared_dataset, synthetic_dir
from paramact.data import prompts
from paramact.data.choice_items import McItem, mc_items
from paramact.data.loading import load_split
from paramact.data.pairs import StsPair, parallel_pairs, sts_pairs
from paramact.data.sampling import pick
from paramact.errors import UserError


def test_boolq_items_first_n_as_the_paper():
    root = shared_dataset("boolq")
    items, src = mc_items("boolq", 3, data_dir=root)
    rows = load_split("boolq", data_dir=root).rows
    assert [it.index for it in items] == [0, 1, 2] and src["order"] == "first"
    assert [it.gold for it in items] == [int(r["label"]) for r in rows[:3]]
    it = items[0]
    assert it.letters == ("no", "yes") and it.choices == ("no", "yes") and it.continuations == (" no", " yes")
    assert it.prompt == it.context == prompts.boolq(rows[0])
    assert it.gold_letter == ("yes" if rows[0]["label"] else "no")


def test_siqa_gold_is_shifted_from_one_based_labels():
    root = shared_dataset("siqa")
    items, _ = mc_items("siqa", None, data_dir=root)
    first = items[0]  # dev row 0: "Tracy didn't go home that evening..." label 3 -> C
    assert first.gold == 2 and first.gold_letter == "C"
    assert first.choices == ("make a new plan", "Go home and see Riley", "Find somewhere to go")
    assert first.context == (
        "Q: Tracy didn't go home that evening and resisted Riley's attacks. What does Tracy need to do before this?\nA:"
    )
    assert sum(it.gold == 0 for it in items) == 643


def test_piqa_and_hellaswag_items():
    root = shared_dataset("piqa")
    items, src = mc_items("piqa", 4, seed=0, data_dir=root)
    assert [it.index for it in items] == pick(1838, 4, 0) and src["order"] == "random"
    assert items[0].letters == ("0", "1") and len(items[0].continuations) == 2
    syn, _ = mc_items("hellaswag", None, path=FIXTURES / "hellaswag_val_synthetic.jsonl")
    assert [it.gold_letter for it in syn] == ["C", "A", "B", "D"]
    assert syn[2].continuations[1] == " scrubs a plate with a sponge and rinses it."


def test_mmlu_five_shot_items_use_dev_demos_of_the_subject():
    root = shared_dataset("mmlu")
    items, src = mc_items("mmlu", 2, seed=3, data_dir=root)
    dev = list(load_split("mmlu", "dev", data_dir=root).rows)
    val = load_split("mmlu", "validation", data_dir=root).rows
    it = items[0]
    row = val[it.index]
    demos = [r for r in dev if r["subject"] == row["subject"]]
    assert len(demos) == 5
    assert it.prompt == "".join(prompts.mmlu(d) + "ABCD"[d["answer"]] + "\n###\n" for d in demos) + prompts.mmlu(row)
    assert it.prompt.count("\n###\n") == 5 and it.prompt.endswith("Answer:")
    desc = (
        "The following are multiple choice questions (with answers) about " + row["subject"].replace("_", " ") + ".\n\n"
    )
    assert it.context.startswith(desc + demos[0]["question"].strip() + "\nA. ")
    assert it.context.count("\nAnswer: ") == 5 and it.context.endswith("\nAnswer:")
    assert it.continuations == (" A", " B", " C", " D") and src["shots"] == 5 and src["demo_split"] == "dev"


def test_mmlu_paper_demos_from_auxiliary_train(tmp_path):
    root = synthetic_dir(
        tmp_path,
        {
            "mmlu/auxiliary_train/synthetic_aux.csv": "mmlu_auxiliary_train_synthetic.csv",
            "mmlu/val/synthetic_val.csv": "mmlu_auxiliary_train_synthetic.csv",
        },
    )
    items, src = mc_items("mmlu", 1, demo_split="auxiliary_train", data_dir=root)
    head = "The following are multiple choice questions (with answers) about .\n\n"
    assert items[0].prompt.startswith(
        head
        + "Synthetic question one?\nA. red\nB. green\nC. blue\nD. black\nAnswer:C\n###\n"
        + head
        + "Synthetic question two?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:A\n###\n"
        + head
        + "Synthetic, quoted\nquestion three?\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:B\n###\n"
    )
    assert src["demo_split"] == "auxiliary_train"


def test_mc_errors(tmp_path):
    with pytest.raises(UserError, match="not a multiple-choice task"):
        mc_items("gsm8k")
    with pytest.raises(UserError, match="shots must be in 0-5"):
        mc_items("mmlu", shots=6)
    with pytest.raises(UserError, match="shots must be in 0"):
        mc_items("boolq", shots=1)
    with pytest.raises(UserError, match="asked for 9 items but hellaswag validation has only 4"):
        mc_items("hellaswag", 9, path=FIXTURES / "hellaswag_val_synthetic.jsonl")


def test_item_is_frozen():
    it = McItem("boolq", "validation", 0, "p", ("no", "yes"), ("no", "yes"), 1, "c", (" no", " yes"))
    with pytest.raises(AttributeError):
        it.gold = 0


def test_sick_splits_from_semeval_column(tmp_path):
    root = synthetic_dir(tmp_path, {"sick/SICK.txt": "SICK_synthetic.txt"})
    counts = {s: len(load_split("sick", s, data_dir=root).rows) for s in ("train", "validation", "test")}
    assert counts == {"train": 3, "validation": 2, "test": 2}
    pairs, src = sts_pairs("sick", None, data_dir=root, split="trial", order="first")
    assert pairs == [
        StsPair("Two dogs run in a field", "Two dogs are running through a field", 4.6, 0),
        StsPair("A boy is not swimming", "A boy is swimming", 3.3, 1),
    ]
    assert src["split"] == "validation"
    pairs, src = sts_pairs("sick", 2, seed=1, split="test", data_dir=root)
    assert sorted(p.score for p in pairs) == [1.0, 4.25] and src["order"] == "random"


def test_stsb_test_split_format(tmp_path):
    root = synthetic_dir(tmp_path, {"stsb/sts-test.csv": "sts-test_synthetic.csv"})
    pairs, _ = sts_pairs("stsb", None, split="test", data_dir=root)
    assert [(p.score, p.b) for p in pairs] == [
        (4.8, "A man is riding a bicycle."),
        (0.25, "Rain expected tonight"),
        (2.5, "Context matters sometimes."),
    ]
    with pytest.raises(UserError, match="not a sentence-similarity dataset"):
        sts_pairs("boolq")


def test_ted_pairs_random_and_counts():
    root = shared_dataset("ted_zh_en")
    pairs, src = parallel_pairs("ted_zh_en", 128, seed=1, split="tst2017", data_dir=root)
    assert [p.index for p in pairs] == pick(1459, 128, 1) and src["samples"] == 128
    assert all(p.zh and p.en for p in pairs)
    assert len(src["files"]) == 2 and src["files"][1]["path"].endswith("IWSLT17.TED.tst2017.zh-en.zh.xml")
