"""Seeded sampling: same seed -> same items on every machine, independent of hash/dict order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_helpers import FIXTURES, shared_data
from paramact.data.sampling import first, item_rng, pick
from paramact.errors import UserError


def test_pick_is_pinned():
    # Mersenne Twister + random.sample are specified by CPython: these never change across platforms
    assert pick(100, 5, 1) == [17, 72, 97, 8, 32]
    assert pick(100, 5, 0) == [49, 97, 53, 5, 33]
    assert pick(3, None, 7) == [0, 1, 2]
    assert first(10, 3) == [0, 1, 2]
    assert item_rng(1, 7, "x").random() == item_rng(1, 7, "x").random() != item_rng(1, 8, "x").random()


@pytest.mark.parametrize(
    "n,message",
    [
        (0, "positive integer"),
        (-1, "positive integer"),
        (True, "positive integer"),
        (11, "asked for 11 items but the data has only 10"),
    ],
)
def test_pick_errors(n, message):
    with pytest.raises(UserError, match=message):
        pick(10, n, 0)


_SCRIPT = """
import json, sys
from paramact.data import load_texts
from paramact.data.choice_items import mc_items
out = {}
texts, src = load_texts("mmlu", 6, 11, data_dir=sys.argv[1])
out["mmlu"] = [src["indices"], texts]
items, _ = mc_items("hellaswag", 3, 2, path=sys.argv[2])
out["hellaswag"] = [it.index for it in items]
texts, src = load_texts("gsm8k", 3, 5, data_dir=sys.argv[1])
out["gsm8k"] = texts
print(json.dumps(out))
"""


def _run(hashseed: str, data: Path) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(data), str(FIXTURES / "hellaswag_val_synthetic.jsonl")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout)


def test_same_items_under_different_hash_seeds():
    data = shared_data()
    if not ((data / "mmlu").is_dir() and (data / "gsm8k").is_dir()):
        pytest.skip("needs the real mmlu and gsm8k folders")
    a, b = _run("0", data), _run("4242", data)
    assert a == b
    assert len(a["mmlu"][0]) == 6 and len(set(a["mmlu"][0])) == 6
    assert a["mmlu"][0] == pick(1531, 6, 11)  # MMLU val files are read in sorted path order
    assert a["hellaswag"] == pick(4, 3, 2)
