"""Token windows (C4, WikiText-2) and calibration sequences (MMLU, SIQA, any dataset), checked
against an independent re-derivation of the paper's samplers with a byte-level toy tokenizer."""

from __future__ import annotations

import random

import pytest

from data_helpers import FIXTURES, ByteTokenizer, shared_dataset, synthetic_dir
from paramact.data import prompts
from paramact.data.analysis import analysis_prompts
from paramact.data.calibration import calibration, concat_sequences, document_windows, stream_windows
from paramact.data.loading import load_split
from paramact.data.registry import get_spec
from paramact.errors import UserError

TOK = ByteTokenizer()


def test_wikitext2_windows_reproduce_the_paper_sampler():
    root = shared_dataset("wikitext2")
    windows, src = calibration("wikitext2", TOK, 4, 64, 3, split="test", data_dir=root)
    ids = list(" ".join(r["text"] for r in load_split("wikitext2", "test", data_dir=root).rows).encode("utf-8"))
    rng = random.Random(3)
    expected = []
    for _ in range(4):
        i = rng.randint(0, len(ids) - 64 - 1)
        expected.append(ids[i : i + 64])
    assert windows == expected
    assert src["windows"] == {
        "method": "stream windows (rows joined with ' ')",
        "nsamples": 4,
        "seqlen": 64,
        "seed": 3,
        "tokenizer": "toy-bytes",
    }


def test_c4_windows_reproduce_the_paper_sampler():
    root = shared_dataset("c4")
    docs = [r["text"] for r in load_split("c4", data_dir=root).rows]
    windows, src = calibration("c4", TOK, 5, 2048, 0, data_dir=root)
    rng, expected = random.Random(0), []
    while len(expected) < 5:
        i = rng.randint(0, len(docs) - 1)
        ids = list(docs[i].encode("utf-8"))
        if len(ids) > 2048:
            j = rng.randint(0, len(ids) - 2048 - 1)
            expected.append(ids[j : j + 2048])
    assert windows == expected and all(len(w) == 2048 for w in windows)
    assert src["split"] == "train" and len(src["files"]) == 2


def test_analysis_windows_are_256_tokens_decoded():
    root = shared_dataset("c4")
    texts, src = analysis_prompts("c4", 3, 1, tokenizer=TOK, data_dir=root)
    docs = [r["text"] for r in load_split("c4", data_dir=root).rows]
    windows = document_windows(docs, TOK, 3, 256, 1)
    assert texts == [TOK.decode(w) for w in windows]
    assert src["window_unit"] == "tokens" and src["windows"]["seqlen"] == 256


def test_window_errors():
    with pytest.raises(UserError, match="no document is longer than seqlen=10"):
        document_windows(["short", "tiny"], TOK, 1, 10, 0)
    with pytest.raises(UserError, match="too few for windows of seqlen=10"):
        stream_windows("abc", TOK, 1, 10, 0)
    with pytest.raises(UserError, match="seqlen must be a positive integer"):
        stream_windows("abc", TOK, 1, 0, 0)


def test_concat_sequences_counter_and_answers():
    items = [f"item{k} Answer:" for k in range(6)]
    answers = ["A", "B", "C", "D", "A", "B"]
    seqs = concat_sequences(items, answers, TOK, 3, 40, 9, followers=0)
    sep, expected, j = "\n###\n", [], 3  # the follower counter starts at n and is shared by all sequences
    for start in random.Random(9).sample(range(6), 3):
        text, pending = items[start], answers[start]
        while len(text.encode()) < 40:  # length is checked before the newest item's answer is added
            text += pending + sep + items[j % 6]
            pending, j = answers[j % 6], j + 1
        expected.append(text[:40])
    assert [TOK.decode(s) for s in seqs] == expected
    # by hand: starts 3, 4, 2; followers 3, 4 | 5, 0 | 1, 2 (counter from n = 3, modulo 6 rows)
    assert expected == [
        "item3 Answer:D\n###\nitem3 Answer:D\n###\nit",
        "item4 Answer:A\n###\nitem5 Answer:B\n###\nit",
        "item2 Answer:C\n###\nitem1 Answer:B\n###\nit",
    ]


def test_mmlu_calibration_joins_items_with_answers():
    root = shared_dataset("mmlu")
    rows = load_split("mmlu", "test", data_dir=root).rows
    seqs, src = calibration("mmlu", TOK, 2, 1500, 4, split="test", data_dir=root)
    start = random.Random(4).sample(range(len(rows)), 2)[0]
    expected = prompts.mmlu(rows[start]) + "ABCD"[rows[start]["answer"]] + "\n###\n" + prompts.mmlu(rows[2])
    assert TOK.decode(seqs[0]).startswith(expected[:1500])
    assert [len(s) for s in seqs] == [1500, 1500]
    assert src["calibration"]["with_answers"] is True and src["calibration"]["separator"] == "\n###\n"


def test_mmlu_calibration_default_split_is_auxiliary_train(tmp_path):
    root = synthetic_dir(tmp_path, {"mmlu/auxiliary_train/synthetic_aux.csv": "mmlu_auxiliary_train_synthetic.csv"})
    seqs, src = calibration("mmlu", TOK, 1, 300, 0, data_dir=root)
    assert src["split"] == "auxiliary_train" and len(seqs[0]) == 300
    text = TOK.decode(seqs[0])
    assert text.startswith("The following are multiple choice questions (with answers) about .\n\n")
    empty = synthetic_dir(tmp_path / "x", {"mmlu/val/a_val.csv": "mmlu_auxiliary_train_synthetic.csv"})
    with pytest.raises(UserError, match="split 'auxiliary_train' of mmlu not found"):
        calibration("mmlu", TOK, 1, 300, 0, data_dir=empty)


def test_siqa_calibration_has_no_answers_and_100_followers():
    root = shared_dataset("siqa")
    rows = load_split("siqa", "train", data_dir=root).rows
    seqs, src = calibration("siqa", TOK, 2, 4096, 1, data_dir=root)
    starts = random.Random(1).sample(range(len(rows)), 2)
    text = TOK.decode(seqs[0])
    assert text.startswith(prompts.siqa(rows[starts[0]]) + "\n###\n" + prompts.siqa(rows[2]) + "\n###\n")
    assert "Answer:A" not in text and "Answer:B" not in text and "Answer:C" not in text
    # 100 followers (items 2..101) push the second sequence's first follower to item 102
    assert TOK.decode(seqs[1]).startswith(prompts.siqa(rows[starts[1]]) + "\n###\n" + prompts.siqa(rows[102]))
    assert src["calibration"]["followers"] == 100 and src["split"] == "train"


def test_generic_calibration_any_dataset():
    seqs, src = calibration(
        "hellaswag", TOK, 2, 500, 0, split="validation", path=FIXTURES / "hellaswag_val_synthetic.jsonl", followers=0
    )
    assert [len(s) for s in seqs] == [500, 500] and src["calibration"]["with_answers"] is False
    seqs, _ = calibration("pydoc", TOK, 1, 100, 0)
    assert len(seqs[0]) == 100
    with pytest.raises(UserError, match="shorter than seqlen=100000"):
        calibration("humaneval", TOK, 1, 100000, 0, path=FIXTURES / "HumanEval_synthetic.jsonl")


def test_excluded_rows_never_reach_the_calibration():
    """BoolQ without a train split: calibrating on validation minus the evaluated items draws only
    from the rows left (here the last three), and the source says how many were excluded."""
    root = shared_dataset("boolq")
    rows = load_split("boolq", "validation", data_dir=root).rows
    seqs, src = calibration("boolq", TOK, 3, 2000, 0, split="validation", data_dir=root, exclude=range(len(rows) - 3))
    assert src["calibration"]["excluded_rows"] == len(rows) - 3
    allowed = {get_spec("boolq").render(r) for r in rows[-3:]}
    for s in seqs:
        pieces = TOK.decode(s).split("\n###\n")
        for piece in pieces[:-1]:  # the last piece is cut at seqlen
            assert piece.rsplit("Answer:", 1)[0] in {a.rsplit("Answer:", 1)[0] for a in allowed}
        assert any(a.startswith(pieces[-1][:50]) for a in allowed)
    with pytest.raises(UserError, match="every row of the calibration split is excluded"):
        calibration("boolq", TOK, 1, 100, 0, split="validation", data_dir=root, exclude=range(len(rows)))
    with pytest.raises(UserError, match="not to token windows"):
        calibration("c4", TOK, 1, 100, 0, data_dir=shared_dataset("c4"), exclude=[0])
