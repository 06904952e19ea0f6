"""`paramact report`: the page's contents (our numbers beside the paper's), and a render in
headless Chromium: a non-blank screenshot, every figure decoded, no console message."""

import base64
import html
import json
import re
import subprocess

import pytest

from data_helpers import shared_dataset
from experiment_helpers import chromium, cli, sts_data_dir
from paramact.report import paper
from tiny import save_tiny

CHECK = (
    "<script>window.__errs=[];window.addEventListener('error',function(e){window.__errs.push("
    "String(e.message||(e.target&&(e.target.src||'').slice(0,40))))},true);window.addEventListener('load',"
    "function(){var im=Array.prototype.slice.call(document.images);document.body.setAttribute('data-check',"
    "JSON.stringify({n:im.length,ok:im.filter(function(i){return i.complete&&i.naturalWidth>0}).length,"
    "errs:window.__errs}))});</script>"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = shared_dataset("gsm8k")
    model_dir = save_tiny(tmp_path_factory.mktemp("tiny") / "llama")
    base = tmp_path_factory.mktemp("runs")
    assert (
        cli(
            "findings",
            "--model",
            str(model_dir),
            "--datasets",
            "humaneval,gsm8k,pydoc",
            "--samples",
            "4",
            "--data-dir",
            str(root),
            "--max-length",
            "32",
            "--sketch-dim",
            "4096",
            "--gammas",
            "1e-3,1e-2",
            "--check-samples",
            "6",
            "--out",
            str(base / "findings"),
        )
        == 0
    )
    moe_dir = save_tiny(tmp_path_factory.mktemp("tiny") / "mixtral", "mixtral")
    assert (
        cli(
            "findings",
            "--model",
            str(moe_dir),
            "--datasets",
            "pydoc,pycode",
            "--samples",
            "4",
            "--max-length",
            "32",
            "--sketch-dim",
            "1024",
            "--check-samples",
            "4",
            "--out",
            str(base / "moe"),
        )
        == 0
    )
    data = sts_data_dir(tmp_path_factory.mktemp("data"))
    assert (
        cli(
            "sts",
            "--model",
            str(model_dir),
            "--samples",
            "10",
            "--data-dir",
            str(data),
            "--no-baselines",
            "--out",
            str(base / "sts"),
        )
        == 0
    )
    return base


def _imgs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_findings_report_contents(runs):
    run = runs / "findings"
    assert cli("report", str(run)) == 0  # re-rendering a finished run is allowed
    page = (run / "report.html").read_text(encoding="utf-8")
    res = json.loads((run / "results.json").read_text())
    imgs = _imgs(page)
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert len(imgs) == len(pngs) == 6  # F1 tasks + corpora, F2 boxes + means, F3 ours + the paper's
    assert all(i.startswith(b"\x89PNG") and len(i) > 3000 for i in imgs)
    assert "finding3_paper.png" in pngs
    assert "http://" not in page and "https://" not in page  # self-contained
    # our matrix and the paper's Fig. 6 values for humaneval-gsm8k (0.19) and gsm8k-gsm8k (0.36) side by side
    m = res["finding3"]["matrix"]
    assert f"{m[0][1]:.3f} <span class=paper>0.19</span>" in page
    assert f"{m[1][1]:.3f} <span class=paper>0.36</span>" in page
    assert "0-based" in page and "1-based" in page
    env = json.loads((run / "env.json").read_text())
    assert html.escape(json.dumps(env["torch"])) in page
    assert f"p99 {res['finding3']['check']['pair_error_p99']:.4f}" in page


def test_sts_report_contents(runs):
    page = (runs / "sts" / "report.html").read_text(encoding="utf-8")
    res = json.loads((runs / "sts" / "results.json").read_text())
    assert f"ρ = {res['spearman']['rho']:.3f}" in page
    for model, rho in paper.TABLE3["stsb"].items():
        assert f"<td class=l>{model}</td><td><span class=paper>{rho:.2f}</span>" in page
    assert len(_imgs(page)) == 2


def test_report_leads_with_the_claims_and_figures(runs):
    """The first screen: the six claims with a verdict, our number and the paper's, each linked to its
    section; figures come before the long tables; a screenshot of the first screen is saved."""
    from PIL import Image, ImageStat

    chromium()
    assert cli("report", str(runs)) == 0
    page = (runs / "report.html").read_text(encoding="utf-8")
    summary = page[page.index("<section id=summary>") : page.index("</section>")]
    assert page.index("<section id=summary>") < page.index("<figure>") < page.index("Finding 1: density per layer")
    for claim in ("Finding 1", "Finding 2", "Finding 3", "Validation 1", "Validation 2", "Validation 3"):
        assert claim in summary
    for anchor in ("findings-finding1", "findings-finding2", "findings-finding3", "sts-sts"):
        assert f'href="#{anchor}"' in summary and f'id="{anchor}"' in page
    assert "not run here" in summary and "class=paper" in summary
    sts = json.loads((runs / "sts" / "results.json").read_text())
    assert f"ρ = {sts['spearman']['rho']:.2f}" in summary
    shot = runs / "report_first_screen.png"
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 900) and ImageStat.Stat(img).stddev[0] > 10


def test_combined_report_of_a_folder_of_runs(runs, tmp_path):
    """`make run` leaves findings/ and sts/ in one folder: one page, a section each, every figure
    (here with a third run, findings on a mixture-of-experts model, between them by name)."""
    assert cli("report", str(runs)) == 0
    page = (runs / "report.html").read_text(encoding="utf-8")
    n_moe = len(list((runs / "moe" / "plots").glob("*.png")))
    assert len(_imgs(page)) == 6 + 2 + n_moe and n_moe >= 6
    assert page.index('<section id="findings">') < page.index('<section id="moe">') < page.index('<section id="sts">')
    assert 'href="#findings"' in page and 'href="#sts"' in page
    sts = json.loads((runs / "sts" / "results.json").read_text())
    assert f"ρ = {sts['spearman']['rho']:.3f}" in page and "Finding 3: deep-layer LLMDcos matrix" in page
    (tmp_path / "empty").mkdir()
    assert cli("report", str(tmp_path / "empty")) == 2  # nothing finished below it


def _render(path, tmp_path):
    """Chromium on a copy of the page with a probe script: (probe JSON, screenshot path, stderr)."""
    exe = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("<head>", "<head>" + CHECK, 1), encoding="utf-8")
    flags = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--window-size=1200,1600",
    ]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    shot = tmp_path / "shot.png"
    r = subprocess.run([*flags, f"--screenshot={shot}", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    found = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    return json.loads(html.unescape(found.group(1))), shot, dom.stderr + r.stderr


def test_moe_findings_report_shows_the_experts(runs):
    """A findings run on a mixture-of-experts model: coverage, per-expert usage per dataset (layer x
    expert heatmaps), and how far the datasets share experts, in results.json and the report."""
    from safetensors.torch import load_file

    run = runs / "moe"
    res = json.loads((run / "results.json").read_text())
    assert res["coverage"]["share"] == 1.0
    ex = res["experts"]
    assert ex["layers"] == [0, 1] and set(ex["usage"]) == {"pydoc", "pycode"}
    for name, u in ex["usage"].items():
        per_sample = load_file(str(run / name / "samples.safetensors"))
        assert per_sample["expert_tokens"].shape == (4, 2, 4)
        assert u["tokens"] == per_sample["expert_tokens"].sum(0).tolist()
        for row in u["token_share"] + u["mass_share"]:
            assert sum(row) == pytest.approx(1.0) and min(row) >= 0
        dens = json.loads((run / name / "results.json").read_text())["experts"]["density"]
        assert [len(layer["experts"]) for layer in dens] == [4, 4]
    sim = ex["similarity"]["pydoc|pycode"]
    assert all(0 <= c <= 1 + 1e-6 for c in sim["token_cosine"] + sim["mass_cosine"] + sim["top_overlap"])
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Mixture of experts" in page and "token-share cosine" in page and "Weights attributed: <b>1.000</b>" in page
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert "experts_mass.png" in pngs and "experts_similarity.png" in pngs
    assert len(_imgs(page)) == len(pngs)


@pytest.mark.parametrize("kind", ["findings", "sts", "moe", "."])
def test_report_renders_in_chromium(runs, kind, tmp_path):
    from PIL import Image, ImageStat

    if kind == ".":
        assert cli("report", str(runs)) == 0
    page = runs / kind / "report.html"
    check, shot, log = _render(page, tmp_path)
    n = len(_imgs(page.read_text(encoding="utf-8")))
    assert check == {"n": n, "ok": n, "errs": []}, check
    console = [l for l in log.splitlines() if ":CONSOLE" in l or "Uncaught" in l]
    assert console == [], console
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 1600)
    stat = ImageStat.Stat(img)
    assert stat.stddev[0] > 10  # text, tables and plots, not a blank page
    dark = sum(img.histogram()[:128]) / (img.size[0] * img.size[1])
    assert 0.005 < dark < 0.5, dark


def test_probe_catches_a_broken_figure_and_console_output(tmp_path):
    """The checks above can fail: a corrupt PNG and a console message are both seen."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>x</title></head><body><p>text</p>"
        "<img src=\"data:image/png;base64,iVBORw0KGgoAAAA=\"><script>console.log('hello')</script>"
        "</body></html>",
        encoding="utf-8",
    )
    check, _, log = _render(bad, tmp_path)
    assert check["n"] == 1 and check["ok"] == 0 and len(check["errs"]) == 1
    assert any(":CONSOLE" in line and "hello" in line for line in log.splitlines())


def test_fig6_agreement_against_known_values():
    names = ["boolq", "mmlu", "siqa", "pydoc"]
    own = [[paper.fig6(a, b) or 0.0 for b in names] for a in names]
    agree = paper.fig6_agreement(names, own)
    assert agree["datasets"] == ["boolq", "mmlu", "siqa"] and agree["all"]["n_cells"] == 6
    assert agree["all"]["rho"] == pytest.approx(1.0) and agree["off_diagonal"]["n_cells"] == 3
    flipped = [[1 - x for x in row] for row in own]
    assert paper.fig6_agreement(names, flipped)["all"]["rho"] == pytest.approx(-1.0)
    assert paper.fig6_agreement(["boolq", "pydoc", "pycode"], own[:3]) is None  # one shared dataset


@pytest.mark.parametrize("sparsities", [(0.7,), (0.5, 0.6, 0.7)])
def test_study_figure_ticks_are_the_study_sparsities(sparsities, tmp_path, monkeypatch):
    """The allocations' points are dodged sideways so their error bars do not overlap; the axis must
    still name only the sparsities the study ran (one sparsity once read as 69.25 … 70.75)."""
    from paramact.report import study_page

    figs = []
    monkeypatch.setattr(study_page, "_save", lambda fig, folder, name: figs.append(fig) or name)
    stat = {"mean": 100.0, "sd": 5.0}
    groups = {"dense": {"method": None, "calibration": None, "schedule": None, "sparsity": 0.0, "tasks": {"c4": stat}}}
    for p in sparsities:
        for sch in ("uniform", "activation", "owl", "alphapruning", "atp"):
            g = {"method": "wanda", "calibration": "c4", "schedule": sch, "sparsity": p, "tasks": {"c4": stat}}
            groups[f"{sch}{p}"] = g
    fig = study_page._against_sparsity({"groups": groups, "config": {}}, tmp_path, ["c4"], True)
    assert fig is not None and len(figs) == 1
    ax = figs[0].axes[0]
    assert list(ax.get_xticks()) == pytest.approx([100 * p for p in sparsities], abs=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{round(100 * p)}" for p in sparsities]
    xs = sorted(x for line in ax.get_lines() for x in line.get_xdata() if line.get_linestyle() != "--")
    assert min(xs) < 100 * sparsities[0] < max(xs)  # the points themselves stay dodged
