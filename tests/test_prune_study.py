"""`paramact study prune` end to end on a tiny model: its tables, --config for a sub-subcommand,
and a study killed with SIGKILL between cells that --resume finishes with the same results."""

import json
import subprocess
import sys

import pytest

from data_helpers import shared_dataset
from tiny import save_tiny

# Kills the study at the N-th pruning (mode "kill") or counts the prunings it runs (mode "count").
KILLER = r"""
import atexit, os, signal, sys
import paramact.prune.study as S
mode, arg = sys.argv[1], int(sys.argv[2])
orig, calls = S.run_prune, [0]
def run_prune(*a, **k):
    calls[0] += 1
    if mode == "kill" and calls[0] == arg:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(*a, **k)
S.run_prune = run_prune
atexit.register(lambda: sys.stderr.write(f"PRUNINGS={calls[0]}\n"))
from paramact.cli import main
sys.exit(main(sys.argv[3:]))
"""

# dense, then per seed: wanda 50% with five allocations (Validation 1) and wanda activation 50%
# calibrated on c4 (the Validation 1 cell, with both task lists) and siqa (Validation 2)
STUDY = {
    "methods": ["wanda"],
    "schedules": ["uniform", "owl", "alphapruning", "atp", "activation"],
    "sparsities": [0.5],
    "calibrations": ["c4", "siqa"],
    "seeds": [0, 1],
    "v1-tasks": ["wikitext2", "siqa", "boolq"],
    "v2-tasks": ["wikitext2", "siqa"],
    "atp-grid": 3,
    "atp-held-out": 2,
    "nsamples": 4,
    "seqlen": 32,
    "density": "mass50",
    "schedule-samples": 4,
    "schedule-seqlen": 32,
    "ppl-seqlen": 32,
    "ppl-windows": 3,
    "items": 4,
    "eval-max-length": 120,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """An uninterrupted study, configured by a YAML file (the command line adds --out)."""
    import yaml

    root = tmp_path_factory.mktemp("study")
    model = save_tiny(root / "model", "llama")
    data = shared_dataset("c4")
    for name in ("siqa", "wikitext2", "boolq"):
        shared_dataset(name)
    cfg = root / "study.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(model), "data-dir": str(data), **STUDY}))
    ref = root / "ref"
    r = subprocess.run(
        [sys.executable, "-m", "paramact", "--quiet", "study", "prune", "--config", str(cfg), "--out", str(ref)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return cfg, ref, r.stdout


def _stable(res: dict) -> dict:
    """results.json without wall-clock times and the lists of cells kept from an interrupted run or
    reused from another study."""
    res = json.loads(json.dumps(res))
    res.pop("seconds"), res.pop("resumed_cells"), res.pop("reused_cells"), res.pop("origin")
    for r in res["rows"]:
        r.pop("seconds", None), r.pop("prune_seconds", None)
        r.get("schedule_values", {}).get("data", {}).pop("seconds", None)
    return res


def test_study_tables_and_config(study):
    _cfg, ref, stdout = study
    res = json.loads((ref / "results.json").read_text())
    saved = json.loads((ref / "config.json").read_text())["study"]
    assert saved["methods"] == ["wanda"] and saved["sparsities"] == [0.5] and saved["calibrations"] == ["c4", "siqa"]
    cells = ["uniform/0.5/c4", "owl/0.5/c4", "alphapruning/0.5/c4", "atp/0.5/c4", "activation/0.5/c4"]
    cells.append("activation/0.5/siqa")
    assert [r["key"] for r in res["rows"]] == ["dense"] + [f"wanda/{c}/s{s}" for s in (0, 1) for c in cells]
    assert res["kind"] == "study"
    assert all(r["ran_on"]["device"] == "cpu" and r["ran_on"]["threads"] >= 1 for r in res["rows"])
    rows = {r["key"]: r for r in res["rows"]}
    dense = rows["dense"]["eval"]["wikitext2"]["ppl"]
    for r in res["rows"][1:]:
        assert r["sparsity_measured"]["overall"] == pytest.approx(0.5, abs=0.02)
        assert r["eval"]["wikitext2"]["ppl"] != dense  # pruning changed the model
        values = r["schedule_values"]["schedule"]
        assert sum(values) / len(values) == pytest.approx(0.5, abs=1e-9)
        # ⌊s × columns⌋ weights per row: on the tiny model's 32 or 48 columns, within 1/32 of s
        assert r["sparsity_measured"]["max_abs_error_vs_schedule"] <= 1 / 32 + 1e-9
    for c in ("owl", "activation", "alphapruning"):
        spread = [
            max(v) - min(v) for v in (rows[f"wanda/{c}/0.5/c4/s{s}"]["schedule_values"]["schedule"] for s in (0, 1))
        ]
        assert min(spread) > 1e-3, c
    # seeds change the calibration draw, so the data-driven schedules and every pruned model differ
    owl = [rows[f"wanda/owl/0.5/c4/s{s}"]["schedule_values"]["schedule"] for s in (0, 1)]
    assert owl[0] != owl[1]
    # AlphaPruning needs no data: the same schedule for every seed
    alpha = [rows[f"wanda/alphapruning/0.5/c4/s{s}"]["schedule_values"]["schedule"] for s in (0, 1)]
    assert alpha[0] == alpha[1]
    # ATP: the searched step is the recorded candidate of lowest held-out perplexity
    for s in (0, 1):
        atp = rows[f"wanda/atp/0.5/c4/s{s}"]["schedule_values"]
        cands = atp["search"]["candidates"]
        assert 4 <= len(cands) <= 5 and atp["step"] == min(cands, key=lambda c: c["ppl"])["step"]
        assert atp["search"]["held_out_windows"] == 2
    # the summary: mean and sample s.d. over the two seeds, by hand
    g = res["groups"]["wanda/uniform/0.5/c4"]["tasks"]["wikitext2"]
    vals = [rows[f"wanda/uniform/0.5/c4/s{s}"]["eval"]["wikitext2"]["ppl"] for s in (0, 1)]
    assert g["mean"] == pytest.approx(sum(vals) / 2) and g["sd"] == pytest.approx(abs(vals[0] - vals[1]) / 2**0.5)
    assert g["n"] == 2 and g["eval_se"] > 0
    assert (ref / "validation1.md").is_file() and (ref / "validation2.md").is_file()
    assert not (ref / "partial.json").exists() and not (ref / "provisional.md").exists()
    assert res["resumed_cells"] == []
    v1 = (ref / "validation1.md").read_text()
    assert "wanda owl 50%" in v1 and " ± " in v1 and "wanda 50%, wikitext2: best" in v1
    # the table marks each task's best allocation (lowest perplexity, highest accuracy) in bold
    table = [x.split(" | ") for x in v1.splitlines() if x.startswith("| wanda ")]
    for col, c in zip((3, 4, 5, 6), res["comparisons"]["allocations"], strict=True):
        means = {r["schedule"]: r["mean"] for r in c["ranking"]}
        best = (min if c["metric"] == "ppl" else max)(means.values())
        assert c["ranking"][0]["mean"] == best
        bold = {row[0].split()[2] for row in table if row[col].startswith("**")}
        assert bold == {k for k, v in means.items() if v == best}  # exact ties all in bold
    # every task ranked: first the scoreboard across tasks, then the paper's metric, then the rest
    verdicts = [x[2:] for x in v1.splitlines() if x.startswith("- ")]
    assert verdicts[0].startswith("wanda 50% across 3 tasks and their average, best per task: wikitext2 ")
    assert verdicts[1].startswith("wanda 50%, the paper's activation allocation against uniform: ")
    assert "average accuracy " in verdicts[1]
    assert verdicts[2].startswith("wanda 50%, wikitext2: best ") and verdicts[3].startswith("wanda 50%, siqa: best ")
    assert verdicts[5].startswith("wanda 50%, average: best ") and len(verdicts) == 6
    assert " points (" in verdicts[3]  # accuracy gaps in points
    # the average column: the unweighted mean of siqa and boolq, model by model
    assert "average: the unweighted mean of the 2 accuracies" in v1 and "average acc %" in v1
    for g in res["groups"].values():
        if "average" in g["tasks"]:
            by_seed = [(rows[f"{g['group']}/s{s}"] if g["method"] else rows["dense"])["eval"] for s in (0, 1)]
            want = [(e["siqa"]["acc"] + e["boolq"]["acc"]) / 2 for e in by_seed[: g["tasks"]["average"]["n"]]]
            assert g["tasks"]["average"]["values"] == pytest.approx(want)
    v2 = (ref / "validation2.md").read_text()
    assert "siqa: calibrated on siqa" in v2 and "calibrated on" not in v1  # each file its own verdicts
    assert "wanda 50%, wikitext2: best" not in v2
    assert "accuracy 4 items per task (siqa, boolq: the paper's letter scoring)" in v2  # each number's protocol
    assert "run directory" in stdout


def test_killed_study_resumes_to_identical_results(study, tmp_path):
    """Killed in its seventh pruning (the first of seed 1): dense and seed 0's six cells are kept, the
    resumed run prunes seed 1's six cells and ends with the uninterrupted run's numbers, the
    calibration sources of the kept cells included (SIQA seed 0 is used by a kept cell alone)."""
    cfg, ref, _ = study
    out = tmp_path / "run"
    base = ["--quiet", "study", "prune", "--config", str(cfg), "--out", str(out)]
    r = subprocess.run([sys.executable, "-c", KILLER, "kill", "7", *base], capture_output=True, text=True)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not (out / "results.json").exists()
    s0 = (
        "uniform/0.5/c4",
        "owl/0.5/c4",
        "alphapruning/0.5/c4",
        "atp/0.5/c4",
        "activation/0.5/c4",
        "activation/0.5/siqa",
    )
    kept = ["dense", *(f"wanda/{c}/s0" for c in s0)]
    assert [c["key"] for c in json.loads((out / "partial.json").read_text())] == kept
    # the tables so far, said to be provisional: seed 0's cells, one seed each (no s.d. yet)
    prov = (out / "provisional.md").read_text()
    assert prov.startswith("# Provisional: 7 of 13 models finished\n") and "## Validation 1: allocations" in prov
    assert "| wanda owl 50% |" in prov and "## Validation 2: calibration data" in prov
    r = subprocess.run(
        [sys.executable, "-m", "paramact", "--quiet", "report", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "its tables so far are in provisional.md" in r.stderr, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "paramact", *base], capture_output=True, text=True)
    assert r.returncode == 2 and "add --resume" in r.stderr
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("nsamples: 4", "nsamples: 6"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "paramact",
            "--quiet",
            "study",
            "prune",
            "--config",
            str(other),
            "--out",
            str(out),
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "cannot resume a different run" in r.stderr
    r = subprocess.run([sys.executable, "-c", KILLER, "count", "0", *base, "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PRUNINGS=6" in r.stderr and "kept from the interrupted run" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["resumed_cells"] == kept and not (out / "provisional.md").exists()
    env = json.loads((out / "env.json").read_text())
    assert [e["time_utc"] <= env["time_utc"] for e in env["earlier"]] == [True]  # the killed session's record
    assert _stable(res) == _stable(json.loads((ref / "results.json").read_text()))
    assert (out / "validation1.md").read_text() == (ref / "validation1.md").read_text()


def test_study_report_has_the_figure_the_verdicts_and_the_summary_claims(study):
    _cfg, ref, _ = study
    r = subprocess.run(
        [sys.executable, "-m", "paramact", "--quiet", "report", str(ref), "--no-screenshot"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    page = (ref / "report.html").read_text()
    assert (ref / "plots" / "ppl_vs_sparsity.png").stat().st_size > 1000
    assert (ref / "plots" / "acc_vs_sparsity.png").stat().st_size > 1000
    assert "Perplexity against sparsity" in page and "data:image/png;base64" in page
    assert "Accuracy against sparsity" in page and "rankings on the other 3 task cells" in page
    assert "Validation 1: allocations" in page and "− uniform" in page
    # the first screen: Validations 1 and 2 now have a verdict from this study, not "not run here"
    summary = page.split("<section id=summary>")[1].split("</section>")[0]
    assert 'href="#validation1"' in summary and 'href="#validation2"' in summary
    assert "activation − uniform ppl: wanda 50%" in summary and "siqa" in summary


def test_boolq_calibration_without_a_train_split_leaves_out_the_evaluated_items(model_dir):
    """BoolQ's local files hold only validation, which the evaluation also scores (its first N
    items): the study calibrates on the rest of the split and says so."""
    from paramact.data import mc_items
    from paramact.evaluation import EvalConfig
    from paramact.models import load_model
    from paramact.prune.config import CalibrationConfig
    from paramact.prune.study import StudyConfig, _calibration

    root = str(shared_dataset("boolq"))
    model, tok = load_model(str(model_dir))
    cfg = StudyConfig(
        methods=(),
        calibrations=("boolq",),
        v1_tasks=("boolq:loglik",),
        v2_tasks=("boolq:loglik",),
        calibration=CalibrationConfig(nsamples=2, seqlen=64, data_dir=root),
        eval=EvalConfig(items=40, data_dir=root),
    )
    windows, src = _calibration(model, tok, cfg, "boolq", 0)
    assert len(windows) == 2 and src["calibration"]["excluded_rows"] == 40
    assert "validation split minus the 40 evaluated items" in src["note"]
    _, isrc = mc_items("boolq", 40, 0, data_dir=root)
    assert isrc["indices"] == list(range(40))  # BoolQ is scored on its first items (the paper's order)


def _study_command(cfg, out, *extra) -> list[str]:
    return ["--quiet", "study", "prune", "--config", str(cfg), "--out", str(out), *extra]


def test_an_extended_study_reuses_the_cells_of_another_and_ends_as_if_it_ran_them(study, tmp_path):
    """The study extended to 60% (uniform and activation): from scratch, its cells shared with the
    first study come out identical to that study's (a cell depends on its own settings only); with
    --cells-from it prunes only the four 60% cells and ends with the from-scratch results."""
    import yaml

    cfg, ref, _ = study
    wider = yaml.safe_load(cfg.read_text())
    wider.update(sparsities=[0.5, 0.6], schedules=["uniform", "activation"])
    wcfg = tmp_path / "wider.yaml"
    wcfg.write_text(yaml.safe_dump(wider))
    scratch, reused = tmp_path / "scratch", tmp_path / "reused"
    r = subprocess.run(
        [sys.executable, "-m", "paramact", *_study_command(wcfg, scratch)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    first = {r["key"]: r for r in _stable(json.loads((ref / "results.json").read_text()))["rows"]}
    fresh = _stable(json.loads((scratch / "results.json").read_text()))
    shared = [r["key"] for r in fresh["rows"] if r["key"] in first]
    assert len(shared) == 7  # dense; per seed uniform and activation 50% on c4, activation 50% on siqa
    for row in fresh["rows"]:
        if row["key"] in first:
            assert row == first[row["key"]], row["key"]

    cmd = _study_command(wcfg, reused, "--cells-from", str(ref))
    r = subprocess.run([sys.executable, "-c", KILLER, "count", "0", *cmd], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PRUNINGS=4" in r.stderr and f"(reused from {ref})" in r.stdout
    # each line counts the cells, and the new ones say how many are left to run
    assert "[1/11] dense (reused from" in r.stdout and "[11/11] " in r.stdout
    assert "; 3 more to run, ~" in r.stdout and "; the last to run)" in r.stdout
    res = json.loads((reused / "results.json").read_text())
    assert res["reused_cells"] == dict.fromkeys(shared, str(ref)) and res["resumed_cells"] == []
    assert json.loads((reused / "env.json").read_text())["cells_from"][str(ref)]["dtype"] == "float32"
    got = _stable(res)
    for row in got["rows"]:
        assert row.pop("reused_from", str(ref)) == str(ref)
    assert got == fresh
    # the tables say where the numbers were computed; the rest is the from-scratch text
    origin = f"7 of 11 models reused from other studies (--cells-from): {ref} (7)"
    assert res["origin"] == origin
    for name in ("validation1.md", "validation2.md"):
        text = (reused / name).read_text()
        assert origin in text and text.replace(origin + "\n\n", "") == (scratch / name).read_text()
    r = subprocess.run(
        [sys.executable, "-m", "paramact", "--quiet", "report", str(reused), "--no-screenshot"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and origin in (reused / "report.html").read_text(), r.stderr[-2000:]


def test_cells_from_a_study_under_other_settings_are_refused_before_the_model_loads(study, tmp_path):
    cfg, ref, _ = study
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("nsamples: 4", "nsamples: 6"))
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "paramact", *_study_command(other, out, "--cells-from", str(ref))],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"--cells-from {ref}: its cells ran under other settings (calibration.nsamples: 4 there, 6 here)" in r.stderr
    assert not out.exists()
    r = subprocess.run(
        [sys.executable, "-m", "paramact", *_study_command(cfg, out, "--cells-from", str(tmp_path))],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "not a study's run directory (no config.json)" in r.stderr
    pruned = tmp_path / "pruned"  # a `paramact prune` run directory
    pruned.mkdir()
    (pruned / "config.json").write_text(json.dumps({"model": "m", "prune": {}}))
    (pruned / "results.json").write_text("{")
    for fix, message in ((None, "cannot read "), ('{"rows": []}', "its config.json holds no study")):
        if fix is not None:
            (pruned / "results.json").write_text(fix)
        cmd = _study_command(cfg, out, "--cells-from", str(pruned))
        r = subprocess.run([sys.executable, "-m", "paramact", *cmd], capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not out.exists()


def test_a_validation1_only_study_has_no_validation2_cell_table_or_verdict(study, tmp_path):
    """--calibrations none: dense and the Validation 1 cells only (a part of a grid run beside others).
    Its cells are the reference study's, so --cells-from runs no model; its rows are those cells."""
    import yaml

    cfg, ref, _ = study
    part = yaml.safe_load(cfg.read_text())
    part.update(schedules=["uniform", "atp"], calibrations=["none"])
    pcfg = tmp_path / "part.yaml"
    pcfg.write_text(yaml.safe_dump(part))
    out = tmp_path / "part"
    cmd = _study_command(pcfg, out, "--cells-from", str(ref))
    r = subprocess.run([sys.executable, "-c", KILLER, "count", "0", *cmd], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PRUNINGS=0" in r.stderr and "[5/5] " in r.stdout
    res = json.loads((out / "results.json").read_text())
    want = ["dense"] + [f"wanda/{a}/0.5/c4/s{s}" for s in (0, 1) for a in ("uniform", "atp")]
    assert [r["key"] for r in res["rows"]] == want
    first = {r["key"]: r for r in json.loads((ref / "results.json").read_text())["rows"]}
    assert all(r["eval"] == first[r["key"]]["eval"] for r in res["rows"])
    assert json.loads((out / "config.json").read_text())["study"]["calibrations"] == []
    assert set(res["tables"]) == {"validation1"} and res["verdicts"]["validation2"] == []
    assert (out / "validation1.md").is_file() and not (out / "validation2.md").exists()
    r = subprocess.run(
        [sys.executable, "-m", "paramact", "--quiet", "report", str(out), "--no-screenshot"],
        capture_output=True,
        text=True,
    )
    html = (out / "report.html").read_text()
    assert r.returncode == 0 and "not in this study (--calibrations none)" in html
    assert "this study ran Validation 1 alone (--calibrations none)" in html  # the summary's claim
    bad = _study_command(cfg, tmp_path / "bad", "--calibrations", "none,c4")
    r = subprocess.run([sys.executable, "-m", "paramact", *bad], capture_output=True, text=True)
    assert r.returncode == 2 and "'none' stands alone" in r.stderr and "Traceback" not in r.stderr
