"""The report's first screen: the paper's six claims, each with a verdict on this model, our number
beside the paper's, and a link to the section that shows the evidence.

Verdict rules (stated on the page):
- Finding 1: every dataset's threshold-free density (mass_share_50) rises from layer 0 to a peak in
  the first half and ends below half the peak (the paper: few at layer 1, rising, then falling).
- Finding 2: shallow-layer mean LLMDcos exceeds deep-layer LLMDcos for >= 75% of cross-dataset pairs.
- Finding 3: Spearman rho of our deep-layer dataset matrix with the paper's Fig. 6 >= 0.5, p < 0.05.
- Validation 3: Spearman rho with the gold scores > 0 at p <= 0.001 (the paper's significance).
- Validations 1 and 2 come from a `paramact study prune` run in the report (`make run` runs none):
  Validation 1 is reproduced when the activation allocation beats uniform beyond noise (wikitext2
  perplexity, paired over seeds) at every method and sparsity, partly when at some; Validation 2
  when calibrating on a task beats C4 calibration on that task beyond noise for every such task,
  partly when for some (a gain within noise reproduces nothing, as in Validation 1).
"""

from __future__ import annotations

from . import paper

REPRODUCED, PARTLY, NOT, ABSENT = "reproduced", "partly", "not reproduced", "not run here"


def _claim(key, name, statement, verdict, ours, theirs, anchor=None) -> dict:
    return {
        "key": key,
        "name": name,
        "statement": statement,
        "verdict": verdict,
        "ours": ours,
        "paper": theirs,
        "anchor": anchor,
    }


def _finding1(res: dict, anchor: str) -> dict:
    ok, peaks, tails = [], [], []
    half = res["n_layers"] / 2
    for name in res["datasets"]:
        m50 = [r["mass_share_50"] for r in res["finding1"][name]["layers"]]
        p = max(range(len(m50)), key=m50.__getitem__)
        peaks.append(p)
        tails.append(m50[-1] / m50[p])
        ok.append(m50[0] < m50[p] and p < half and m50[-1] < 0.5 * m50[p])
    c4 = paper.c4_share_above()
    pp = max(range(len(c4)), key=c4.__getitem__)
    verdict = REPRODUCED if all(ok) else PARTLY if sum(ok) >= len(ok) / 2 else NOT
    return _claim(
        "finding1",
        "Finding 1",
        "density rises through the shallow layers, then falls with depth",
        verdict,
        f"{sum(ok)}/{len(ok)} datasets; peak at layer {sorted(peaks)[len(peaks) // 2]} of {res['n_layers']} "
        f"(median), last layer {100 * sum(tails) / len(tails):.0f}% of the peak",
        f"C4 (code): peak at layer {pp} of 32, last layer {100 * c4[-1] / c4[pp]:.0f}% of the peak",
        anchor,
    )


def _finding2(res: dict, anchor: str) -> dict:
    cross = {k: v for k, v in res["finding2"]["summary"].items() if k.split("|")[0] != k.split("|")[1]}
    drops = [v["drop"] for v in cross.values()]
    ours_share = sum(d > 0 for d in drops) / len(drops) if drops else 0.0
    theirs = [(sum(v[:16]) / 16, sum(v[16:30]) / 14) for v in paper.FINDING2_LAYERS.values()]
    verdict = ABSENT if not drops else REPRODUCED if ours_share >= 0.75 else PARTLY if ours_share >= 0.5 else NOT
    ours = (
        (
            f"{sum(d > 0 for d in drops)}/{len(drops)} cross pairs lower in deep layers, mean drop "
            f"{sum(drops) / len(drops):.3f}"
        )
        if drops
        else "no cross-dataset pair"
    )
    return _claim(
        "finding2",
        "Finding 2",
        "across domains, shallow layers are more similar than deep layers",
        verdict,
        ours,
        f"{len(theirs)}/{len(theirs)} cross pairs lower (code, LLaMA-7B), mean drop "
        f"{sum(s - d for s, d in theirs) / len(theirs):.3f}",
        anchor,
    )


def _finding3(res: dict, anchor: str) -> dict:
    f3 = res["finding3"]
    agree = paper.fig6_agreement(f3["datasets"], f3["matrix"])
    if not agree:
        return _claim(
            "finding3",
            "Finding 3",
            "deep-layer similarity tracks data relevance",
            ABSENT,
            "fewer than 3 datasets of Fig. 6 in this run",
            "Fig. 6 (Llama-2-7B)",
            anchor,
        )
    a = agree["all"]
    verdict = REPRODUCED if a["rho"] >= 0.5 and a["p"] < 0.05 else PARTLY if a["rho"] > 0 else NOT
    return _claim(
        "finding3",
        "Finding 3",
        "deep-layer similarity tracks data relevance",
        verdict,
        f"Spearman ρ = {a['rho']:.2f} with Fig. 6 over {a['n_cells']} cells (p = {a['p']:.1e})",
        "Fig. 6 (Llama-2-7B): the reference matrix",
        anchor,
    )


def _validation3(res: dict, anchor: str) -> dict:
    sp = res["spearman"]
    table = paper.TABLE3.get(res["dataset"], {})
    rho, p = sp["rho"], sp["p"]
    verdict = ABSENT if rho is None else REPRODUCED if rho > 0 and p <= 1e-3 else PARTLY if rho > 0 else NOT
    theirs = ", ".join(f"{m} {v:.2f}" for m, v in table.items()) or "no number for this dataset"
    ours = "ρ undefined" if rho is None else f"ρ = {rho:.2f} (p = {p:.1e}, {sp['n_pairs']} pairs)"
    return _claim(
        "validation3",
        "Validation 3",
        f"summed deep LLMDcos correlates with {res['dataset']} gold scores",
        verdict,
        ours,
        f"Table 3: {theirs}",
        anchor,
    )


def _absent(key: str, name: str, statement: str, theirs: str) -> dict:
    return _claim(key, name, statement, ABSENT, "run `paramact study prune` (see the README's results)", theirs)


def _activation_vs_uniform(comparisons: list[dict]) -> list[tuple[dict, dict, bool]]:
    """(comparison, activation − uniform, better beyond noise) wherever both were ranked."""
    out = []
    for c in comparisons:
        act = next((r for r in c["ranking"] if r["schedule"] == "activation"), None)
        if act is None or act["vs_uniform"] is None:
            continue
        d = act["vs_uniform"]
        out.append((c, d, d["beyond_noise"] and (d["diff"] < 0) == (c["metric"] == "ppl")))
    return out


def _validation1(res: dict, anchor: str) -> dict:
    """The verdict rests on the paper's metric (v1_task, WikiText-2 perplexity); the accuracy tasks
    ranked beside it are counted in the text."""
    allocs = res["comparisons"]["allocations"]
    main = res["comparisons"].get("v1_task", allocs[0]["task"] if allocs else None)
    pairs = _activation_vs_uniform([c for c in allocs if c["task"] == main])
    if not pairs:
        return _claim(
            "validation1", "Validation 1", V1, ABSENT, "this study has no activation and uniform pair", V1_PAPER
        )
    wins = [w for _, _, w in pairs]
    verdict = REPRODUCED if all(wins) else PARTLY if any(wins) else NOT
    ours = "activation − uniform ppl: " + ", ".join(
        f"{c['method']} {100 * c['sparsity']:g}%: {d['diff']:+.3g}" for c, d, _ in pairs
    )
    avg = res["comparisons"].get("average_task")  # the mean of the accuracy tasks, counted apart
    acc = _activation_vs_uniform([c for c in allocs if c["metric"] == "acc" and c["task"] != avg])
    if acc:
        ours += f"; better beyond noise on {sum(w for _, _, w in acc)} of {len(acc)} accuracy comparisons"
    ours += "".join(
        f"; average accuracy {c['method']} {100 * c['sparsity']:g}%: {_diff('acc', d)}"
        for c, d, _ in _activation_vs_uniform([c for c in allocs if c["task"] == avg])
    )
    return _claim("validation1", "Validation 1", V1, verdict, ours, V1_PAPER, anchor)


def _diff(metric: str, cmp: dict) -> str:
    """A paired difference as a reader takes it: accuracy in points, perplexity as is; and whether
    it is beyond noise."""
    d = f"{cmp['diff']:+.3g}" if metric == "ppl" else f"{100 * cmp['diff']:+.1f} points"
    return d + ("" if cmp["beyond_noise"] else " (within noise)")


def _validation2(res: dict, anchor: str) -> dict:
    cmps = res["comparisons"]["calibrations"]
    if not cmps:
        note = (
            "this study has no calibration set that is also one of its evaluated tasks"
            if "validation2" in res.get("tables", {})
            else "this study ran Validation 1 alone (--calibrations none)"
        )
        return _claim("validation2", "Validation 2", V2, ABSENT, note, V2_PAPER)
    strong = [c["helped"] and c["vs_c4"]["beyond_noise"] for c in cmps]
    verdict = REPRODUCED if all(strong) else PARTLY if any(strong) else NOT
    ours = ", ".join(f"{c['task']} {_diff(c['metric'], c['vs_c4'])} vs C4" for c in cmps)
    return _claim("validation2", "Validation 2", V2, verdict, ours, V2_PAPER, anchor)


V1 = "layer sparsities from activation density prune better"
V1_PAPER = "Table 1: Wanda 50%, WikiText-2 ppl 6.46 → 6.39 on Llama-2-7B (better on all 4 models)"
V2 = "calibrating on a task helps that task"
V2_PAPER = "Table 2: MMLU calibration gives the best MMLU score on all 3 models"


def claims(runs: list[tuple[str, dict]]) -> list[dict]:
    """The six claims from the finished runs of a report (anchor prefix, results) -> rows."""
    first = {}
    for prefix, res in runs:
        first.setdefault(res.get("kind"), (prefix, res))
    out = []
    if "findings" in first:
        prefix, res = first["findings"]
        out += [
            _finding1(res, f"{prefix}finding1"),
            _finding2(res, f"{prefix}finding2"),
            _finding3(res, f"{prefix}finding3"),
        ]
    else:
        out += [
            _claim(k, n, s, ABSENT, "no findings run in this report", "–")
            for k, n, s in (
                ("finding1", "Finding 1", "density rises through the shallow layers, then falls with depth"),
                ("finding2", "Finding 2", "across domains, shallow layers are more similar than deep layers"),
                ("finding3", "Finding 3", "deep-layer similarity tracks data relevance"),
            )
        ]
    if "study" in first:
        prefix, res = first["study"]
        out += [_validation1(res, f"{prefix}validation1"), _validation2(res, f"{prefix}validation2")]
    else:
        out += [
            _absent("validation1", "Validation 1", V1, V1_PAPER),
            _absent("validation2", "Validation 2", V2, V2_PAPER),
        ]
    if "sts" in first:
        prefix, res = first["sts"]
        out.append(_validation3(res, f"{prefix}sts"))
    else:
        out.append(
            _claim(
                "validation3",
                "Validation 3",
                "LLMDcos correlates with semantic similarity",
                ABSENT,
                "no sts run in this report",
                "Table 3",
            )
        )
    return out
