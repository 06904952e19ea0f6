"""`paramact data list|show`: the command's own function (bad input raises) and the whole CLI (one line, exit 2)."""

from __future__ import annotations

import pytest

from data_helpers import FIXTURES, shared_dataset, synthetic_dir
from paramact.cli import COMMANDS, main, parser
from paramact.errors import UserError


def _run(argv: list[str]) -> int:
    return COMMANDS["data"].run(None, None, parser().parse_args(argv))


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("PARAMACT_DATA_DIR", raising=False)


def test_list_shows_sources_and_rows(tmp_path, capsys):
    root = synthetic_dir(
        tmp_path, {"sick/SICK.txt": "SICK_synthetic.txt", "boolq/val.jsonl": "boolq_superglue_val_synthetic.jsonl"}
    )
    assert _run(["data", "--data-dir", str(root), "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["sick"].split()[2:6] == ["local", "train=3", "validation=2", "test=2"]
    assert lines["boolq"].split()[2:4] == ["local", "validation=2"]
    assert lines["pydoc"].split()[2] == "embedded"
    assert set(lines) >= {
        "mmlu",
        "siqa",
        "piqa",
        "hellaswag",
        "humaneval",
        "gsm8k",
        "c4",
        "wikitext2",
        "stsb",
        "ted_zh_en",
        "pycode",
    }


def test_list_real_data(capsys):
    root = shared_dataset("mmlu")
    _run(["data", "--data-dir", str(root), "list"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mmlu "))
    assert "dev=285 validation=1531 test=14042" in line


def test_show_prints_rendered_prompts(tmp_path, capsys):
    root = synthetic_dir(tmp_path, {"hellaswag/hellaswag_val.jsonl": "hellaswag_val_synthetic.jsonl"})
    assert _run(["data", "--data-dir", str(root), "show", "hellaswag", "--samples", "2", "--data-seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("=== hellaswag validation row ") == 2
    assert out.count("How does the description likely end?\n\nA. ") == 2


def test_show_eval_form_and_pairs(tmp_path, capsys):
    root = synthetic_dir(
        tmp_path,
        {"hellaswag/hellaswag_val.jsonl": "hellaswag_val_synthetic.jsonl", "sick/SICK.txt": "SICK_synthetic.txt"},
    )
    _run(["data", "--data-dir", str(root), "show", "hellaswag", "--form", "eval", "--n", "4"])
    out = capsys.readouterr().out
    assert out.count("--- letter scoring") == 4 and out.count("[x]") == 4 and "gold=C" in out
    _run(["data", "show", "sick", "--path", str(FIXTURES / "SICK_synthetic.txt"), "--split", "test", "--n", "2"])
    out = capsys.readouterr().out
    assert "score=4.25" in out and "The girl reads a book" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["show", "nosuch"], "unknown dataset 'nosuch'"),
        (["show", "boolq", "--path", "/nonexistent/val.jsonl"], "data file not found"),
        (["show", "boolq", "--split", "nope"], "has no split 'nope'"),
        (["show", "boolq", "--n", "50"], "asked for 50 items but boolq validation has only 2"),
        (["show", "gsm8k", "--shots", "9"], "shots must be in 0-8"),
        (["show", "boolq", "--path", "MALFORMED"], "malformed JSON"),
    ],
)
def test_bad_input_raises_user_error(tmp_path, argv, message):
    root = synthetic_dir(tmp_path, {"boolq/val.jsonl": "boolq_superglue_val_synthetic.jsonl"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    argv = [str(bad) if a == "MALFORMED" else a for a in argv]
    with pytest.raises(UserError, match=message):
        _run(["data", "--data-dir", str(root), *argv])


def test_main_prints_one_line_and_exits_2(capsys):
    assert main(["data", "show", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paramact: error: unknown dataset 'nosuch'") and err.count("\n") == 1
