"""The real benchmark files in ../shared/data: official row counts (SOURCES.md), label counts,
recorded sha256, and golden prompts of one fixed item per dataset, written by hand from the
paper's templates (the paper, §2)."""

from __future__ import annotations

from collections import Counter

import pytest

from data_helpers import sha256sums, shared_data, shared_dataset
from paramact.data.analysis import render_items
from paramact.data.loading import load_split

# (dataset, split, official rows, files read) from SOURCES.md
ROW_COUNTS = [
    ("boolq", "validation", 3270, 1),
    ("mmlu", "dev", 285, 57),
    ("mmlu", "validation", 1531, 57),
    ("mmlu", "test", 14042, 57),
    ("siqa", "validation", 1954, 2),
    ("siqa", "train", 33410, 2),
    ("piqa", "validation", 1838, 2),
    ("hellaswag", "validation", 10042, 1),
    ("gsm8k", "test", 1319, 1),
    ("gsm8k", "train", 7473, 1),
    ("c4", "train", 2000, 2),  # two real 1000-document samples
    ("wikitext2", "test", 4358, 1),
    ("wikitext2", "validation", 3760, 1),
    ("stsb", "train", 5749, 1),
    ("stsb", "dev", 1500, 1),
    ("ted_zh_en", "tst2016", 1156, 2),
    ("ted_zh_en", "tst2017", 1459, 2),
]


@pytest.mark.parametrize("name,split,rows,nfiles", ROW_COUNTS, ids=[f"{r[0]}-{r[1]}" for r in ROW_COUNTS])
def test_official_row_counts(name, split, rows, nfiles):
    root = shared_dataset(name)
    data = load_split(name, split, data_dir=root)
    assert len(data.rows) == rows
    assert data.source["rows"] == rows
    assert data.source["source"] == "local"
    assert len(data.source["files"]) == nfiles


def test_recorded_sha256_match_sha256sums():
    root = shared_data()
    sums = sha256sums()
    checked = 0
    for name, split, _, _ in ROW_COUNTS:
        if not (root / name).is_dir():
            continue
        for rec in load_split(name, split, data_dir=root).source["files"]:
            rel = rec["path"][len(str(root.resolve())) + 1 :]
            assert rec["sha256"] == sums[rel], rel
            checked += 1
    assert checked >= 57 * 3 + 10


def test_c4_samples_have_1000_documents_each():
    root = shared_dataset("c4")
    first = load_split("c4", "train", path=root / "c4/first1000_c4-train.00000-of-01024/c4_sample.jsonl")
    olmo = load_split("c4", "train", path=root / "c4/olmo_test_fixture/c4-sample.00000-of-00001.json.gz")
    assert (len(first.rows), len(olmo.rows)) == (1000, 1000)
    assert first.rows[0]["text"].startswith("Beginners BBQ Class Taking Place in Missoula!\n")
    assert first.rows[1]["text"].startswith("Discussion in 'Mac OS X Lion (10.7)'")
    assert first.source["source"] == "path"
    assert first.source["files"][0]["sha256"] == "cdd5b754119131d2934e3e799a059a9d64f53a6aac9e7e2ef79b43120bb01a32"


def test_label_counts_match_sources_md():
    root = shared_data()
    if (root / "piqa").is_dir():
        assert Counter(r["label"] for r in load_split("piqa", "validation", data_dir=root).rows) == {0: 910, 1: 928}
    if (root / "siqa").is_dir():
        assert Counter(r["label"] for r in load_split("siqa", "validation", data_dir=root).rows) == {
            1: 643,
            2: 654,
            3: 657,
        }
    if (root / "boolq").is_dir():
        assert Counter(r["label"] for r in load_split("boolq", "validation", data_dir=root).rows) == {
            True: 2033,
            False: 1237,
        }
    if (root / "hellaswag").is_dir():
        rows = load_split("hellaswag", "validation", data_dir=root).rows
        assert Counter(r["label"] for r in rows) == {0: 2515, 1: 2485, 2: 2584, 3: 2458}
        assert [r["label"] for r in rows[:10]] == [3, 3, 2, 2, 1, 1, 2, 0, 1, 1]
        assert len({r["activity_label"] for r in rows}) == 192
    if (root / "stsb").is_dir():
        genres = Counter(r["genre"] for r in load_split("stsb", "dev", data_dir=root).rows)
        assert genres == {"main-captions": 625, "main-forums": 375, "main-news": 500}


def test_wikitext2_rows_are_hf_lines():
    root = shared_dataset("wikitext2")
    rows = [r["text"] for r in load_split("wikitext2", "test", data_dir=root).rows]
    assert rows[:3] == ["", " = Robert Boulter = \n", ""]
    assert sum(1 for r in rows if r) == 2891
    assert all(r == "" or r.endswith("\n") for r in rows)
    # HF num_bytes of the test split (dataset card): non-blank bytes + 4 bytes per row
    assert sum(len(r.encode("utf-8")) for r in rows) + 4 * len(rows) == 1_305_088


def test_derived_copies_are_flagged():
    root = shared_data()
    if (root / "hellaswag").is_dir():
        assert "llama.cpp" in load_split("hellaswag", "validation", data_dir=root).source["notes"][0]
    if (root / "boolq").is_dir():
        assert "OpenCompass" in load_split("boolq", "validation", data_dir=root).source["notes"][0]


def test_mmlu_csv_field_with_u0085_is_one_row():
    root = shared_dataset("mmlu")
    rows = load_split("mmlu", "test", path=root / "mmlu/test/management_test.csv").rows
    assert len(rows) == 103
    assert [r["question"] for r in rows if "\x85" in r["question"]] == ["Functional structures help to create\x85..."]


# ---- golden prompts: one fixed real item per dataset, expected strings typed from the templates ----


def _render(name, split, index, shots=0, seed=1):
    root = shared_dataset(name)
    rows = load_split(name, split, data_dir=root).rows
    return render_items(name, rows, [index], seed, shots)[0]


def test_golden_boolq():
    assert _render("boolq", "validation", 2644) == (
        "The Punisher (season 2) -- The season is set for release in 2019.\n"
        "Question: are they going to make a punisher season 2?\n"
        "Answer:"
    )


def test_golden_mmlu():
    assert _render("mmlu", "validation", 873) == (
        "The following are multiple choice questions (with answers) about miscellaneous.\n\n"
        "How many ounces are in a pound?\n"
        "A. 4\nB. 12\nC. 16\nD. 32\n"
        "Answer:"
    )


def test_golden_siqa():
    assert _render("siqa", "validation", 114) == (
        "The following are multiple choice questions (with answers) about social interaction.\n"
        "Riley was in pain.\n"
        "How would Riley feel afterwards?\n"
        "A. aware\nB. Painful\nC. Great\n"
        "Answer:"
    )


def test_golden_piqa():  # the release's trailing spaces are kept
    assert _render("piqa", "validation", 1549) == "Question:laser\n0. burns face \n1. burns air \nAnswer:"


def test_golden_hellaswag_llamacpp_copy():
    assert _render("hellaswag", "validation", 3) == (
        "The following are multiple choice to finish a sentence (with answer) about High jump.\n\n"
        "A boy is running down a track. the boy...\n"
        "How does the description likely end?\n\n"
        "A. runs into a car.\n\n"
        "B. gets in a mat.\n\n"
        "C. lifts his body above the height of a pole.\n\n"
        "D. stands on his hands and springs.\n\n"
        "Answer:"
    )


def test_golden_gsm8k_zero_shot():
    assert _render("gsm8k", "test", 462) == (
        "Q: Ali had $21. Leila gave him half of her $100. How much does Ali have now?\nA: "
    )


def test_golden_stsb_pairs_first_rows():
    from paramact.data.pairs import sts_pairs

    pairs, source = sts_pairs("stsb", 3, data_dir=shared_dataset("stsb"))
    assert [(p.a, p.b, p.score, p.index) for p in pairs] == [
        ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0, 0),
        ("A young child is riding a horse.", "A child is riding a horse.", 4.75, 1),
        ("A man is feeding a mouse to a snake.", "The man is feeding a mouse to the snake.", 5.0, 2),
    ]
    assert source["split"] == "dev" and source["order"] == "first"


def test_golden_ted_first_pair():
    from paramact.data.pairs import parallel_pairs

    pairs, _ = parallel_pairs("ted_zh_en", None, split="tst2016", data_dir=shared_dataset("ted_zh_en"))
    p = pairs[0]
    assert (p.talk, p.seg) == ("2227", "1")
    assert (
        p.en
        == "We're at a tipping point in human history,  a species poised between gaining the stars and losing the planet we call home."  # noqa: E501
    )
    assert p.zh == "我们身处人类历史的转折点上， 人类处在想获得其他星球， 同时也在失去地球家园的尴尬境地。"
