"""report.html: one self-contained page per run directory (figures inlined as PNG data URIs,
tables, the run's config and environment, and the paper's numbers beside ours where they exist).

Reads the run directory only; no scripts, no external resources.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..errors import UserError
from ..runs import atomic_path, read_json
from . import paper
from .plots import figures
from .study_page import study_body, study_figures
from .summary import ABSENT, NOT, PARTLY, REPRODUCED, claims

_CSS = """body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}figure{margin:1.2em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#555}pre{background:#f7f7f7;padding:.6em;font-size:12px;overflow-x:auto}
.paper{color:#a33}.note{font-size:12px;color:#555}h4{margin:.4em 0}"""


def _e(x) -> str:
    return html.escape(str(x))


def _f(x, nd=3) -> str:
    return "–" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else _e(x)


def table(head: list[str], rows: list[list], left: int = 1) -> str:
    th = "".join(f"<th{' class=l' if i < left else ''}>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i < left else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _p(x) -> str:
    return "–" if x is None else f"{x:.2e}"


def _paper(x, nd=2) -> str:
    return f"<span class=paper>{_f(x, nd)}</span>" if x is not None else "–"


def _findings(res: dict, prefix: str = "") -> str:
    parts = [
        f"<p>{_e(res['index_note'])}. Ranges: "
        + "; ".join(
            f"{n} {_e(r['label'])} (paper at 32 layers: {_e(r['paper_at_32_layers'])})"
            for n, r in res["ranges"].items()
        )
        + "</p>"
    ]
    names, g = res["datasets"], res["gammas"][0]
    rows = []
    L = res["n_layers"]
    c4 = paper.c4_share_above()
    for i in range(L):
        row = [str(i)]
        for n in names:
            r = res["finding1"][n]["layers"][i]
            row.append(f"{r['count_above'][g] / r['params']:.3f} / {r['mass_share_50']:.3f}")
        j = round(i * 31 / max(L - 1, 1))  # the same relative depth in the paper's 32 layers
        row.append(_paper(c4[j], 3) + f" (layer {j})")
        rows.append(row)
    parts.append(
        f'<h3 id="{prefix}finding1">Finding 1: density per layer</h3>'
        f"<p>Each cell: share of the layer's weights with mean |A| "
        f"&gt; γ={_e(g)} / threshold-free mass_share_50. Red: the paper code's C4 share above γ=2e-6 "
        f"at the same relative depth ({_e(paper.C4_NOTE)}).</p>"
    )
    parts.append(table(["layer", *names, "paper C4 >2e-6"], rows))
    rows = []
    for k, v in res["finding2"]["summary"].items():
        a, b = k.split("|")
        pk = paper.pair_key(a, b, paper.FINDING2_LAYERS)
        pl = paper.FINDING2_LAYERS[pk] if pk else None
        ps, pd = (sum(pl[:16]) / 16, sum(pl[16:30]) / 14) if pl else (None, None)
        rows.append(
            [_e(k.replace("|", " – ")), _f(v["shallow"]), _f(v["deep"]), _f(v["drop"]), _paper(ps, 3), _paper(pd, 3)]
        )
    parts.append(
        f'<h3 id="{prefix}finding2">Finding 2: shallow vs deep similarity per pair</h3>'
        f"<p>Mean fingerprint LLMDcos over all item "
        f"pairs. Red: {_e(paper.FINDING2_NOTE)}, shallow [0, 16) and deep [16, 30).</p>"
    )
    parts.append(table(["pair", "shallow", "deep", "shallow − deep", "paper shallow", "paper deep"], rows))
    f3 = res["finding3"]
    rows = [
        [_e(a)] + [f"{f3['matrix'][i][j]:.3f} " + _paper(paper.fig6(a, b)) for j, b in enumerate(f3["datasets"])]
        for i, a in enumerate(f3["datasets"])
    ]
    parts.append(
        f'<h3 id="{prefix}finding3">Finding 3: deep-layer LLMDcos matrix</h3>'
        f"<p>Layers {_e(f3['layer_range']['label'])}; "
        f"{_e(f3['method'])}. Red: {_e(paper.FIG6_NOTE)}.</p>"
    )
    parts.append(table([""] + f3["datasets"], rows))
    agree = paper.fig6_agreement(f3["datasets"], f3["matrix"])
    if agree:
        a, o = agree["all"], agree["off_diagonal"]
        parts.append(
            f"<p>Agreement with the paper's Fig. 6 on the {len(agree['datasets'])} shared datasets: "
            f"Spearman ρ = <b>{a['rho']:.2f}</b> over {a['n_cells']} cells (p = {_p(a['p'])}); "
            f"off the diagonal ρ = {o['rho']:.2f} over {o['n_cells']} cells (p = {_p(o['p'])}).</p>"
        )
    ck = f3.get("check")
    if ck:
        parts.append(
            "<p>Check against exact in-batch LLMDcos on "
            f"{sum(ck['samples_per_dataset'].values())} items ({ck['n_pairs']} pairs × {ck['n_layers']} "
            f"layers, sketch m={ck['sketch_dim']}): per-pair |error| mean {ck['pair_error_mean']:.4f}, "
            f"p99 {ck['pair_error_p99']:.4f}, max {ck['pair_error_max']:.4f}; subset matrix max |error| "
            f"{ck['matrix_error_max']:.4f} (standard error bound √(2/m) = {ck['standard_error_bound']:.4f}).</p>"
        )
    parts.append(_experts(res))
    return "".join(parts)


def _coverage(res: dict) -> str:
    cov = res.get("coverage")
    if not cov:
        return ""
    miss = f"; not attributed: {_e(', '.join(cov['uncovered']))}" if cov["uncovered"] else ""
    return (
        f"<p>Weights attributed: <b>{cov['share']:.3f}</b> of the decoder blocks' weights "
        f"({cov['attributed_params']:,} of {cov['block_params']:,}; biases excluded){miss}.</p>"
    )


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def _experts(res: dict) -> str:
    ex = res.get("experts")
    if not ex:
        return ""
    rows = [
        [
            _e(k.replace("|", " – ")),
            _f(_mean(v["token_cosine"])),
            _f(_mean(v["mass_cosine"])),
            _f(_mean(v["top_overlap"])),
        ]
        for k, v in ex["similarity"].items()
    ]
    used = [
        [
            _e(n),
            _f(
                sum(sum(1 for x in r if x > 0) for r in u["samples_reaching"])
                / max(1, sum(len(r) for r in u["samples_reaching"]))
            ),
        ]
        for n, u in ex["usage"].items()
    ]
    return (
        f"<h3>Mixture of experts</h3><p>MoE layers {_e(', '.join(map(str, ex['layers'])))}. {_e(ex['note'])}. "
        "Means over the MoE layers; top experts: the most used quarter.</p>"
        + table(["pair", "token-share cosine", "mass-share cosine", "top-expert overlap"], rows)
        + table(["dataset", "share of experts any sample reached"], used)
    )


def _sts(res: dict, prefix: str = "") -> str:
    sp = res["spearman"]
    model_rows = [[_e(m), _paper(v)] for m, v in paper.TABLE3.get(res["dataset"], {}).items()]
    rows = [[_e(r["name"]), _e(r["layer_range"]["label"]), _f(r["rho"]), _p(r["p"])] for r in res["ranges"]]
    base = [[_e(n), _f(b.get("rho")), _p(b.get("p")), _e(b.get("note", ""))] for n, b in res["baselines"].items()]
    return (
        f'<h3 id="{prefix}sts">Spearman ρ, {_e(res["dataset"])} {_e(res["split"])}</h3><p><b>ρ = {_f(sp["rho"])}</b> '
        f"(p = {_p(sp['p'])}, {sp['n_pairs']} pairs, LLMDcos summed over {_e(sp['layer_range']['label'])}).</p>"
        + table(["range", "layers", "ρ", "p"], rows)
        + "<h3>Baselines on the same pairs</h3>"
        + table(["baseline", "ρ", "p", "note"], base, left=1)
        + f"<h3 class=paper>The paper</h3><p>{_e(paper.TABLE3_NOTE)}</p>"
        + table(["model", "ρ"], model_rows)
    )


def _crosslingual(res: dict, prefix: str = "") -> str:
    d = res["deep"]
    return (
        f'<p id="{prefix}crosslingual">{res["n_pairs"]} pairs; deep layers {_e(res["layer_range"]["label"])}'
        f": translations "
        f"{d['matched']:.3f}, mismatched {d['mismatched']:.3f}; translation above its mismatched pair in "
        f"{100 * d['matched_higher_share']:.0f}% of pairs. The paper's code ran this experiment but recorded no "
        "numbers.</p>"
    )


_BODIES = {
    "findings": _findings,
    "sts": _sts,
    "crosslingual": _crosslingual,
    "study": lambda res, prefix="": study_body(res, prefix, table),
}
_TITLES = {
    "study": "Validations 1-2: the pruning study",
    "findings": "Findings 1-3",
    "sts": "Validation 3: semantic similarity",
    "crosslingual": "Cross-lingual pairs",
}


def _section(run_dir: Path, res: dict, level: int, prefix: str = "") -> str:
    """One finished run: what it covers, its figures (inlined), then its tables, config and environment."""
    figs = (study_figures if res["kind"] == "study" else figures)(res, run_dir / "plots")
    fig_html = ""
    for f in figs:
        data = base64.b64encode((run_dir / "plots" / f.file).read_bytes()).decode()
        fig_html += (
            f'<figure><h4>{_e(f.title)}</h4><img alt="{_e(f.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(f.caption)}</figcaption></figure>"
        )
    extra = {n: read_json(run_dir / n) if (run_dir / n).is_file() else {} for n in ("config.json", "env.json")}
    h = f"h{level}"
    return (
        f"<p>Run directory: {_e(run_dir.resolve())}</p>{_coverage(res)}<{h}>Figures</{h}>{fig_html}"
        f"<{h}>Tables</{h}>{_BODIES[res['kind']](res, prefix)}"
        f"<details><summary>Configuration</summary><pre>{_e(json.dumps(extra['config.json'], indent=1))}</pre>"
        f"</details><details><summary>Environment</summary><pre>{_e(json.dumps(extra['env.json'], indent=1))}"
        "</pre></details>"
    )


_VERDICT_COLOR = {REPRODUCED: "#1a7f37", PARTLY: "#9a6700", NOT: "#cf222e", ABSENT: "#6e7781"}


def _summary(runs: list[tuple[str, dict]]) -> str:
    """The first screen: the paper's six claims on this model, ours beside the paper's numbers."""
    rows = []
    for c in claims(runs):
        link = f'<a href="#{_e(c["anchor"])}">{_e(c["name"])}</a>' if c["anchor"] else _e(c["name"])
        color = _VERDICT_COLOR[c["verdict"]]
        rows.append(
            [
                link,
                _e(c["statement"]),
                f'<b style="color:{color}">{_e(c["verdict"])}</b>',
                _e(c["ours"]),
                f"<span class=paper>{_e(c['paper'])}</span>",
            ]
        )
    return (
        "<section id=summary><h2>What was found</h2>"
        + table(["claim", "the paper says", "on this model", "ours", "the paper's"], rows, left=5)
        + "<p class=note>Verdicts: Finding 1 needs every dataset's threshold-free density to rise to a peak in "
        "the first half and end below half of it; Finding 2, ≥ 75% of cross-dataset pairs less similar in "
        "the deep layers; Finding 3, Spearman ρ ≥ 0.5 (p &lt; 0.05) with the paper's Fig. 6; Validation 3, "
        "ρ &gt; 0 at p ≤ 0.001. Red: the paper's numbers.</p></section>"
    )


def _runs_below(parent: Path) -> list[tuple[Path, dict]]:
    """The finished runs of known kinds directly below a folder, by name."""
    found = []
    for d in sorted(p for p in parent.iterdir() if p.is_dir()):
        if (d / "results.json").is_file():
            res = read_json(d / "results.json")
            if res.get("kind") in _BODIES:
                found.append((d, res))
    return found


def render_report(run_dir: str | Path) -> Path:
    """Write plots and DIR/report.html for a finished run directory, or for a folder whose
    subfolders are finished runs (one page, a section each, as `make run` leaves); return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory")
    if (run_dir / "results.json").is_file():
        res = read_json(run_dir / "results.json")
        kind = res.get("kind")
        if kind not in _BODIES:
            raise UserError(
                f"{run_dir}: no report for runs of kind {kind!r} (findings, sts, crosslingual and study have one)"
            )
        title = f"paramact {kind}: {res.get('model', '')}"
        body = _summary([("", res)]) + _section(run_dir, res, 2)
    else:
        runs = _runs_below(run_dir)
        if not runs:
            running = (run_dir / "provisional.md").is_file()
            raise UserError(
                f"{run_dir} holds no results.json, nor finished runs in its subfolders: not a finished run directory"
                + ("; a study still running or interrupted, its tables so far are in provisional.md" if running else "")
            )
        models = sorted({str(r.get("model", "")) for _, r in runs})
        title = f"paramact: {', '.join(models)}"
        toc = "".join(f'<li><a href="#{_e(d.name)}">{_e(_TITLES[r["kind"]])} ({_e(d.name)})</a></li>' for d, r in runs)
        body = (
            _summary([(f"{d.name}-", r) for d, r in runs])
            + f"<ul>{toc}</ul>"
            + "".join(
                f'<section id="{_e(d.name)}"><h2>{_e(_TITLES[r["kind"]])}</h2>{_section(d, r, 3, f"{d.name}-")}'
                "</section>"
                for d, r in runs
            )
        )
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )
    out = run_dir / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
