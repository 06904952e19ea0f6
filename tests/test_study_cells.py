"""Which cells of other studies a study reuses (prune.study_cells), on rows written by hand."""

import pytest

from paramact.errors import UserError
from paramact.prune.study_cells import CellSource, cell_settings, check_dtype, reusable_cells


def _config(**study):
    base = {
        "seeds": [0, 1],
        "patterns": [["wanda", "row"]],
        "calibration": {"nsamples": 16, "data_dir": "/a"},
        "schedule": {"name": "activation"},
        "eval": {"items": 500, "data_dir": "/a"},
        "methods": ["wanda"],
        "sparsities": [0.5],
    }
    return {"model": "m", "study": {**base, **study}}


def _row(key, *tasks, **extra):
    return {
        "key": key,
        "tasks": list(tasks),
        "tables": ["validation1"],
        "eval": {t: {"acc": 0.5} for t in tasks},
        **extra,
    }


PLANNED = [
    {"key": "dense", "tasks": ["wikitext2", "boolq"]},
    {"key": "wanda/uniform/0.6/c4/s0", "tasks": ["wikitext2", "boolq"]},
    {"key": "wanda/owl/0.6/c4/s0", "tasks": ["wikitext2", "boolq"]},
]


def test_the_grid_axes_and_paths_are_not_cell_settings_the_rest_are():
    mine = _config(sparsities=[0.6], methods=["wanda", "sparsegpt"])
    theirs = _config(calibration={"nsamples": 16, "data_dir": "/elsewhere"})
    assert cell_settings(mine) == cell_settings(theirs)
    for change in ({"seeds": [0, 1, 2]}, {"eval": {"items": 250}}, {"schedule": {"name": "activation", "seed": 2}}):
        assert cell_settings(_config(**change)) != cell_settings(mine)
    assert cell_settings({**mine, "model": "other"}) != cell_settings(mine)


def test_cells_are_reused_with_the_tasks_this_study_evaluates():
    a = CellSource(
        "A",
        _config(),
        [
            _row("dense", "wikitext2", "boolq", "piqa"),  # a task more: dropped from the reused row
            _row("wanda/uniform/0.6/c4/s0", "wikitext2"),  # lacks boolq: runs again
            _row("wanda/uniform/0.5/c4/s0", "wikitext2", "boolq"),  # not in this study
        ],
        {"dtype": "float32"},
    )
    b = CellSource(
        "B",
        _config(),
        [_row("dense", "wikitext2", "boolq"), _row("wanda/owl/0.6/c4/s0", "wikitext2", "boolq", reused_from="C")],
        {},
    )
    got, notes = reusable_cells(PLANNED, _config(sparsities=[0.6]), [a, b])
    assert sorted(got) == ["dense", "wanda/owl/0.6/c4/s0"]
    assert got["dense"]["reused_from"] == "A" and set(got["dense"]["eval"]) == {"wikitext2", "boolq"}
    assert "tasks" not in got["dense"] and "tables" not in got["dense"]  # the plan's own lists stay
    assert got["wanda/owl/0.6/c4/s0"]["reused_from"] == "C"  # where it was computed, through B
    assert notes == [
        "A: 1 of this study's cells reused; 1 more lack a task this study evaluates and run again",
        "B: 1 of this study's cells reused",
    ]


def test_a_source_under_other_settings_or_in_another_dtype_is_refused():
    src = CellSource("A", _config(seeds=[0, 1, 2]), [_row("dense", "wikitext2", "boolq")], {"dtype": "float32"})
    with pytest.raises(
        UserError, match=r"--cells-from A: its cells ran under other settings \(seeds: \[0, 1, 2\] there"
    ):
        reusable_cells(PLANNED, _config(), [src])
    src = CellSource("A", _config(), [_row("dense", "wikitext2", "boolq")], {"dtype": "bfloat16"})
    with pytest.raises(UserError, match="its model ran in bfloat16, this one in float32"):
        check_dtype(src, "float32")
    assert list(reusable_cells(PLANNED, _config(), [src])[0]) == ["dense"]  # settings only: the dtype is checked apart
