"""The study's statistics by hand: mean ± s.d. over seeds, the paired t-test, the paired evaluation
standard error, and the verdicts built on them."""

import math

import pytest
from scipy import stats

from paramact.prune.study_stats import (
    allocation_comparisons,
    calibration_comparisons,
    compare,
    paired_eval_se,
    summarize,
)


def _row(schedule, seed, ppl, nll=None, calibration="c4", table="validation1", acc=None):
    ev = {"wikitext2": {"ppl": ppl, "ppl_stderr": 0.5, "per_window_nll": nll or [math.log(ppl)] * 4}}
    if acc is not None:
        ev["mmlu:lmeval"] = {"acc": sum(acc) / len(acc), "stderr": 0.02, "correct_items": acc}
    return {
        "key": f"wanda/{schedule}/0.5/{calibration}/s{seed}",
        "group": f"wanda/{schedule}/0.5/{calibration}",
        "method": "wanda",
        "schedule": schedule,
        "sparsity": 0.5,
        "calibration": calibration,
        "seed": seed,
        "tables": [table],
        "eval": ev,
        "sparsity_measured": {"overall": 0.5},
    }


UNIFORM = [80.0, 82.0, 81.0]
OWL = [78.0, 79.5, 78.2]


def test_summary_is_the_mean_and_sample_sd_over_seeds():
    g = summarize([_row("uniform", s, p) for s, p in enumerate(UNIFORM)])["wanda/uniform/0.5/c4"]
    t = g["tasks"]["wikitext2"]
    assert t["mean"] == pytest.approx(81.0) and t["sd"] == pytest.approx(1.0) and t["n"] == 3
    assert t["eval_se"] == 0.5 and g["seeds"] == [0, 1, 2] and g["measured"] == 0.5


def test_paired_comparison_equals_scipys_paired_t_test():
    rows = [_row("uniform", s, p) for s, p in enumerate(UNIFORM)] + [_row("owl", s, p) for s, p in enumerate(OWL)]
    groups = summarize(rows)
    c = compare(groups["wanda/owl/0.5/c4"], groups["wanda/uniform/0.5/c4"], "wikitext2")
    d = [o - u for o, u in zip(OWL, UNIFORM)]
    assert c["diff"] == pytest.approx(sum(d) / 3) and c["n"] == 3
    assert c["p"] == pytest.approx(stats.ttest_rel(OWL, UNIFORM).pvalue, rel=1e-9)
    # identical per-window NLL differences: the paired evaluation s.e. is 0, only the seeds decide
    assert c["eval_se"] == pytest.approx(0.0, abs=1e-12)
    assert c["beyond_noise"] == (c["p"] < 0.05)


def test_paired_evaluation_standard_error_by_hand():
    a = {"ppl": 10.0, "per_window_nll": [2.0, 2.4, 2.2, 2.6]}
    b = {"ppl": 12.0, "per_window_nll": [2.1, 2.3, 2.5, 2.5]}
    d = [-0.1, 0.1, -0.3, 0.1]
    m = sum(d) / 4
    se = math.sqrt(sum((x - m) ** 2 for x in d) / 3) / 2
    assert paired_eval_se(a, b) == pytest.approx(se * 11.0)
    x = {"acc": 0.5, "correct_items": [1, 0, 1, 0]}
    y = {"acc": 0.25, "correct_items": [1, 0, 0, 0]}
    assert paired_eval_se(x, y) == pytest.approx(math.sqrt(((0.75**2) + 3 * (0.25**2)) / 3) / 2)
    # no per-window data: the two standard errors combined as if independent
    assert paired_eval_se({"ppl": 1.0, "ppl_stderr": 3.0}, {"ppl": 1.0, "ppl_stderr": 4.0}) == pytest.approx(5.0)


def test_a_difference_inside_the_evaluation_noise_is_within_noise():
    """Consistent over seeds (p tiny) but smaller than twice the paired evaluation s.e.: within noise."""
    nll_u = [4.0, 4.8, 3.6, 5.2]
    rows = [_row("uniform", s, 80.0 + s, nll_u) for s in range(3)]
    rows += [_row("owl", s, 79.9 + s, [4.4, 4.4, 4.4, 4.4]) for s in range(3)]
    groups = summarize(rows)
    c = compare(groups["wanda/owl/0.5/c4"], groups["wanda/uniform/0.5/c4"], "wikitext2")
    assert c["p"] == 0.0 and abs(c["diff"]) < 2 * c["eval_se"] and not c["beyond_noise"]
    one = summarize([_row("owl", 0, 79.0), _row("uniform", 0, 80.0)])
    c1 = compare(one["wanda/owl/0.5/c4"], one["wanda/uniform/0.5/c4"], "wikitext2")
    assert c1["n"] == 1 and math.isnan(c1["p"]) and not c1["beyond_noise"]


def test_rankings_and_calibration_verdicts():
    rows = [_row("uniform", s, p) for s, p in enumerate(UNIFORM)] + [_row("owl", s, p) for s, p in enumerate(OWL)]
    rows += [_row("activation", s, 90.0 + s) for s in range(3)]
    (c,) = allocation_comparisons(summarize(rows), ["wanda"], [0.5], "wikitext2")
    assert [r["schedule"] for r in c["ranking"]] == ["owl", "uniform", "activation"]
    assert c["ranking"][0]["vs_best"] is None and c["ranking"][1]["vs_uniform"] is None
    assert c["ranking"][2]["vs_uniform"]["diff"] == pytest.approx(91.0 - 81.0)
    v2 = [
        _row("activation", s, 90.0, calibration=cal, table="validation2", acc=acc)
        for s in range(3)
        for cal, acc in (("c4", [1, 0, 0, 0]), ("mmlu", [1, 1, 0, 0]))
    ]
    (m,) = calibration_comparisons(summarize(v2), ["c4", "mmlu"], ["mmlu:lmeval"])
    assert m["helped"] and m["vs_c4"]["diff"] == pytest.approx(0.25) and m["calibration"] == "mmlu"


@pytest.mark.parametrize(
    ("helped", "beyond", "verdict"),
    [
        ((True, True), (True, True), "reproduced"),
        ((True, True), (True, False), "partly"),
        ((True, False), (False, False), "not reproduced"),  # a gain within noise reproduces nothing
        ((False, False), (True, True), "not reproduced"),  # worse beyond noise is no support either
    ],
)
def test_validation2_summary_needs_a_gain_beyond_noise(helped, beyond, verdict):
    from paramact.report.summary import _validation2

    cmps = [
        {"task": t, "metric": "acc", "helped": h, "vs_c4": {"diff": 0.009 if h else -0.02, "beyond_noise": b}}
        for t, h, b in zip(("mmlu:lmeval", "siqa:lmeval"), helped, beyond, strict=True)
    ]
    claim = _validation2({"comparisons": {"calibrations": cmps}}, "v2")
    assert claim["verdict"] == verdict
    assert claim["ours"].startswith("mmlu:lmeval +0.9 points" if helped[0] else "mmlu:lmeval -2.0 points")
