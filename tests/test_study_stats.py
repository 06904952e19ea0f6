"""The study's statistics by hand: mean ± s.d. over seeds, the paired t-test, the paired evaluation
standard error, and the verdicts built on them."""

import math

import pytest
from scipy import stats

from paramact.prune.study_stats import (
    allocation_comparisons,
    allocation_scoreboard,
    allocation_verdicts,
    calibration_comparisons,
    calibration_verdicts,
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
    (c,) = allocation_comparisons(summarize(rows), ["wanda"], [0.5], ["wikitext2"])
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


# per seed: correct items out of 8; the same items for every allocation (paired)
ITEMS = {
    "uniform": ([1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]),
    "owl": ([1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0, 0]),
    "activation": ([1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]),
}


def _two_task_rows():
    ppl = {"uniform": UNIFORM, "owl": OWL, "activation": [90.0, 91.0, 92.0]}
    return [_row(sch, s, ppl[sch][s], acc=ITEMS[sch][s]) for sch in ITEMS for s in range(3)]


def test_every_task_is_ranked_accuracy_higher_first_and_worded_in_points():
    comps = allocation_comparisons(summarize(_two_task_rows()), ["wanda"], [0.5], ["wikitext2", "mmlu:lmeval"])
    assert [c["task"] for c in comps] == ["wikitext2", "mmlu:lmeval"]
    acc = comps[1]
    assert acc["metric"] == "acc" and [r["schedule"] for r in acc["ranking"]] == ["owl", "activation", "uniform"]
    # activation − owl, per seed (2-6, 4-7, 2-6)/8
    vs = acc["ranking"][1]["vs_best"]
    assert vs["diff"] == pytest.approx(-11 / 24)
    assert vs["p"] == pytest.approx(stats.ttest_rel([2, 4, 2], [6, 7, 6]).pvalue, rel=1e-9)
    # the paired per-item s.e. per seed, averaged over seeds
    ses = []
    for act, owl in zip(ITEMS["activation"], ITEMS["owl"], strict=True):
        d = [x - y for x, y in zip(act, owl, strict=True)]
        m = sum(d) / 8
        ses.append(math.sqrt(sum((x - m) ** 2 for x in d) / 7) / math.sqrt(8))
    assert vs["eval_se"] == pytest.approx(sum(ses) / 3)
    assert vs["beyond_noise"]  # p < 0.05 and 45.8 points > twice the s.e.
    lines = allocation_verdicts(comps)
    assert lines[0].startswith("wanda 50%, wikitext2: best owl 78.57 ± 0.81; uniform +2.43 (beyond noise")
    assert lines[1].startswith("wanda 50%, mmlu:lmeval: best owl 79.2 ± 7.2; activation -45.8 points (beyond noise")
    assert f"eval s.e. {100 * vs['eval_se']:.2g} points)" in lines[1]


def test_the_scoreboard_names_each_tasks_winner_and_counts_activation_against_uniform():
    groups = summarize(_two_task_rows())
    comps = allocation_comparisons(groups, ["wanda"], [0.5], ["wikitext2", "mmlu:lmeval"])
    best, act = allocation_scoreboard(comps)
    w = compare(groups["wanda/uniform/0.5/c4"], groups["wanda/owl/0.5/c4"], "wikitext2")
    a = compare(groups["wanda/activation/0.5/c4"], groups["wanda/owl/0.5/c4"], "wikitext2")
    tied = [n for n, c in (("uniform", w), ("activation", a)) if not c["beyond_noise"]]
    first = "beyond noise over all" if not tied else "within noise: " + ", ".join(tied)
    # on mmlu owl beats activation (above) and uniform (4 items of 8 on every seed) beyond noise
    assert (
        best
        == f"wanda 50% across 2 tasks, best per task: wikitext2 owl ({first}); mmlu:lmeval owl (beyond noise over all)"
    )
    # activation vs uniform: wikitext2 +10 ppl over 3 seeds (worse); mmlu (2-2, 4-3, 2-2)/8: within noise
    ppl = compare(groups["wanda/activation/0.5/c4"], groups["wanda/uniform/0.5/c4"], "wikitext2")
    mm = compare(groups["wanda/activation/0.5/c4"], groups["wanda/uniform/0.5/c4"], "mmlu:lmeval")
    assert ppl["diff"] == pytest.approx(10.0) and not mm["beyond_noise"]
    worse = "worse beyond noise on 1 (wikitext2)" if ppl["beyond_noise"] else "worse beyond noise on 0"
    within = 1 + (not ppl["beyond_noise"])
    assert act == (
        "wanda 50%, the paper's activation allocation against uniform: "
        f"better beyond noise on 0, {worse}, within noise on {within}"
    )
    # one task only: the per-task verdict line says it all, no scoreboard
    assert allocation_scoreboard(comps[:1]) == []
    one = summarize([r for r in _two_task_rows() if r["seed"] == 0])
    (b1, *_) = allocation_scoreboard(allocation_comparisons(one, ["wanda"], [0.5], ["wikitext2", "mmlu:lmeval"]))
    assert b1.count("(one seed: noise not measured)") == 2


def test_accuracy_noise_is_worded_in_points_in_the_calibration_verdicts():
    v2 = [
        _row("activation", s, 90.0, calibration=cal, table="validation2", acc=acc)
        for s in range(3)
        for cal, acc in (("c4", [1, 0, 0, 0]), ("mmlu", [1, 1, 0, 0]))
    ]
    (line,) = calibration_verdicts(calibration_comparisons(summarize(v2), ["c4", "mmlu"], ["mmlu:lmeval"]))
    # the same +1 item of 4 on every seed: p = 0, but 25 points are within twice the paired s.e. (25 points)
    se = math.sqrt(((0.75**2) + 3 * (0.25**2)) / 3) / 2
    assert 0.25 < 2 * se
    assert line == (
        f"mmlu:lmeval: calibrated on mmlu 50.0 vs C4 25.0 (better, within noise (paired t over 3 seeds p=0; "
        f"eval s.e. {100 * se:.2g} points))"
    )


def test_validation1_summary_rests_on_the_papers_metric_and_counts_the_accuracy_tasks():
    from paramact.report.summary import _validation1

    groups = summarize(_two_task_rows())
    comps = allocation_comparisons(groups, ["wanda"], [0.5], ["wikitext2", "mmlu:lmeval"])
    claim = _validation1({"comparisons": {"allocations": comps, "v1_task": "wikitext2"}}, "v1")
    # activation is +10 ppl over uniform on wikitext2 (worse), and within noise on mmlu: not reproduced
    assert claim["verdict"] == "not reproduced"
    assert claim["ours"] == (
        "activation − uniform ppl: wanda 50%: +10; better beyond noise on 0 of 1 accuracy comparisons"
    )
    # a study ranked on accuracy alone has no perplexity claim to make
    only_acc = {"comparisons": {"allocations": comps[1:], "v1_task": "wikitext2"}}
    assert _validation1(only_acc, "v1")["verdict"] == "not run here"


def test_the_average_accuracy_by_hand_and_its_paired_standard_error():
    from paramact.prune.study_stats import AVERAGE, average_accuracy

    a = {"boolq:lmeval": {"acc": 0.5, "stderr": 0.3, "correct_items": [1, 0, 1, 0]}}
    a["mmlu:lmeval"] = {"acc": 0.5, "stderr": 0.4, "correct_items": [1, 1, 0, 0, 1, 0]}
    b = {"boolq:lmeval": {"acc": 0.25, "stderr": 0.3, "correct_items": [1, 0, 0, 0]}}
    b["mmlu:lmeval"] = {"acc": 2 / 6, "stderr": 0.4, "correct_items": [1, 1, 0, 0, 0, 0]}
    tasks = ["boolq:lmeval", "mmlu:lmeval"]
    avg_a = average_accuracy(a, tasks)
    # each task weighs 1/2 whatever its item count; s.e. sqrt(0.3² + 0.4²) / 2
    assert avg_a["acc"] == pytest.approx(0.5) and avg_a["stderr"] == pytest.approx(0.25)
    assert average_accuracy(b, tasks)["acc"] == pytest.approx((0.25 + 2 / 6) / 2)
    # paired: per task the s.e. of the per-item differences, then sqrt(Σ se²) / k
    se_boolq = math.sqrt(((0.75**2) + 3 * (0.25**2)) / 3) / 2  # differences 0, 0, 1, 0
    d = [0, 0, 0, 0, 1, 0]
    se_mmlu = math.sqrt(sum((x - 1 / 6) ** 2 for x in d) / 5) / math.sqrt(6)
    want = math.sqrt(se_boolq**2 + se_mmlu**2) / 2
    assert paired_eval_se(avg_a, average_accuracy(b, tasks)) == pytest.approx(want)
    # a task missing or without accuracy, or fewer than two tasks: no average
    assert average_accuracy({"boolq:lmeval": a["boolq:lmeval"]}, tasks) is None
    assert average_accuracy({**a, "mmlu:lmeval": {"ppl": 3.0}}, tasks) is None
    assert average_accuracy(a, tasks[:1]) is None
    # summarize: the average is one more task, its seed-to-seed comparison a paired t over the averages
    rows = []
    for sch, accs in (("uniform", ([1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0])), ("owl", ([1, 1, 0, 0],) * 3)):
        for s, items in enumerate(accs):
            r = _row(sch, s, 80.0, acc=items)
            r["eval"]["boolq:lmeval"] = {"acc": 0.5 + 0.1 * s, "stderr": 0.02}
            rows.append(r)
    groups = summarize(rows, average_over=tasks)
    assert AVERAGE not in summarize(rows)["wanda/owl/0.5/c4"]["tasks"]
    u = [(0.25 + 0.5) / 2, (0.5 + 0.6) / 2, (0.0 + 0.7) / 2]
    o = [(0.5 + 0.5) / 2, (0.5 + 0.6) / 2, (0.5 + 0.7) / 2]
    t = groups["wanda/uniform/0.5/c4"]["tasks"][AVERAGE]
    assert t["metric"] == "acc" and t["values"] == pytest.approx(u)
    c = compare(groups["wanda/owl/0.5/c4"], groups["wanda/uniform/0.5/c4"], AVERAGE)
    assert c["diff"] == pytest.approx(sum(o) / 3 - sum(u) / 3)
    assert c["p"] == pytest.approx(stats.ttest_rel(o, u).pvalue, rel=1e-9)


def test_the_scoreboard_reports_the_average_apart_from_the_task_count():
    from paramact.prune.study_stats import AVERAGE

    rows = _two_task_rows()
    for r in rows:  # a second accuracy task, the same for every model: the average moves with mmlu
        r["eval"]["boolq:lmeval"] = {"acc": 0.5, "stderr": 0.02, "correct_items": [1, 0] * 4}
    tasks = ["wikitext2", "mmlu:lmeval", "boolq:lmeval", AVERAGE]
    groups = summarize(rows, average_over=["mmlu:lmeval", "boolq:lmeval"])
    comps = allocation_comparisons(groups, ["wanda"], [0.5], tasks)
    best, act = allocation_scoreboard(comps)
    assert best.startswith("wanda 50% across 3 tasks and their average, best per task: wikitext2 owl (")
    assert "; average owl (" in best
    d = compare(groups["wanda/activation/0.5/c4"], groups["wanda/uniform/0.5/c4"], AVERAGE)
    assert d["diff"] == pytest.approx((1 / 24) / 2)  # half of mmlu's +1/24
    assert act.endswith(
        f", average accuracy +2.1 points (within noise (paired t over 3 seeds p={d['p']:.2g}; "
        f"eval s.e. {100 * d['eval_se']:.2g} points))"
    )
    assert "within noise on 2" in act  # mmlu and boolq; wikitext2's +10 is counted as a task
    from paramact.report.summary import _validation1

    res = {"comparisons": {"allocations": comps, "v1_task": "wikitext2", "average_task": AVERAGE}}
    ours = _validation1(res, "v1")["ours"]
    assert (
        "better beyond noise on 0 of 2 accuracy comparisons; average accuracy wanda 50%: +2.1 points (within noise)"
        in ours
    )


def test_a_tie_improves_nothing():
    from paramact.prune.study_stats import improves

    assert improves("ppl", -0.1) and improves("acc", 0.01)
    assert not improves("ppl", 0.1) and not improves("acc", -0.01)
    assert not improves("ppl", 0.0) and not improves("acc", 0.0)


def test_the_same_score_on_every_seed_is_no_difference():
    rows = [_row("uniform", s, 80.0 + s) for s in range(3)] + [_row("owl", s, 80.0 + s) for s in range(3)]
    rows += [_row("atp", s, 79.0 + s) for s in range(3)]
    groups = summarize(rows)
    same = compare(groups["wanda/owl/0.5/c4"], groups["wanda/uniform/0.5/c4"], "wikitext2")
    assert same["diff"] == 0 and same["p"] == 1.0 and not same["beyond_noise"]
    shifted = compare(groups["wanda/atp/0.5/c4"], groups["wanda/uniform/0.5/c4"], "wikitext2")
    assert shifted["diff"] == pytest.approx(-1.0) and shifted["p"] == 0.0  # -1 on every seed


def test_exact_ties_share_the_win():
    rows = [_row("uniform", s, 80.0 + s) for s in range(3)] + [_row("owl", s, 80.0 + s) for s in range(3)]
    rows += [_row("atp", s, 82.0 + s) for s in range(3)]
    for r in rows:
        r["eval"]["mmlu:lmeval"] = {"acc": 0.5, "stderr": 0.02, "correct_items": [1, 0, 1, 0]}
    comps = allocation_comparisons(summarize(rows), ["wanda"], [0.5], ["wikitext2", "mmlu:lmeval"])
    lines = allocation_verdicts(comps)
    assert lines[0].startswith("wanda 50%, wikitext2: best uniform = owl 81.00 ± 1.00; atp +2 (beyond noise")
    assert lines[1] == "wanda 50%, mmlu:lmeval: best uniform = owl = atp 50.0 ± 0.0"
    (best,) = allocation_scoreboard(comps)  # no activation allocation: no count against uniform
    assert best.endswith("wikitext2 uniform = owl (beyond noise over all); mmlu:lmeval uniform = owl = atp")


def test_a_running_study_ranks_on_the_seeds_every_allocation_finished():
    """Uniform has seeds 0 and 1, OWL only seed 0 (a study still running). On seed 0 OWL is better;
    uniform's two-seed mean is better only because seed 1 was a good draw. The ranking, the gaps and
    Validation 2's means use seed 0 alone, so the best is OWL and every gap points the same way."""
    rows = [_row("uniform", 0, 80.0), _row("uniform", 1, 70.0), _row("owl", 0, 79.0)]
    (c,) = allocation_comparisons(summarize(rows), ["wanda"], [0.5], ["wikitext2"])
    assert [r["schedule"] for r in c["ranking"]] == ["owl", "uniform"]
    assert c["ranking"][0]["mean"] == 79.0 and c["ranking"][1]["mean"] == 80.0
    assert c["ranking"][1]["vs_best"]["diff"] == pytest.approx(1.0) and c["ranking"][1]["vs_best"]["n"] == 1
    # no seed in common: nothing to rank
    assert (
        allocation_comparisons(
            summarize([_row("uniform", 1, 70.0), _row("owl", 0, 79.0)]), ["wanda"], [0.5], ["wikitext2"]
        )
        == []
    )
    v2 = [
        _row("activation", 0, 90.0, calibration="c4", table="validation2", acc=[1, 1, 0, 0]),
        _row("activation", 1, 90.0, calibration="c4", table="validation2", acc=[0, 0, 0, 0]),
        _row("activation", 0, 90.0, calibration="mmlu", table="validation2", acc=[1, 0, 0, 0]),
    ]
    (m,) = calibration_comparisons(summarize(v2), ["c4", "mmlu"], ["mmlu:lmeval"])
    assert m["c4_mean"] == 0.5 and m["mean"] == 0.25 and not m["helped"]
