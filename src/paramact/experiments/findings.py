"""`paramact findings`: the paper's three findings (the paper, §2) from one engine pass per dataset.

- Finding 1: per-layer density of every dataset (counts above each γ, threshold-free mass shares).
- Finding 2: per-layer LLMDcos distributions of dataset pairs (k-th item with k-th item; a
  dataset with itself pairs item k with item k + N/2, so the two items always differ), and a
  shallow-vs-deep summary for every pair of datasets.
- Finding 3: the dataset x dataset matrix of mean deep-layer LLMDcos over all cross pairs,
  from the datasets' summed fingerprints (N passes for N datasets, not N²), checked against
  exact in-batch LLMDcos on a subset of items.

Run directory: config.json, env.json, DIR/<dataset>/{fingerprints,samples}.safetensors and a
per-dataset results.json, then DIR/results.json last (kind "findings"). Layer indices are
0-based everywhere; ranges are fractions of depth (layers.py).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..api import ActivationConfig, analyze
from ..context import RunContext
from ..data import CORPORA, load_texts
from ..density import gamma_key
from ..errors import UserError
from ..experts import usage_similarity
from ..fields import DATA_DIR_HELP, DATA_SEED_HELP, option
from ..models import ModelConfig, load
from ..runs import check_resumable, environment, prepare_out, write_json
from ..sketch import read_fingerprints
from ..targets import get_target
from .activations import DATA_HELP, ActivationsRun, DatasetTexts, mean_pair_llmdcos, run_dataset
from .layers import DEEP, INDEX_NOTE, SHALLOW

log = logging.getLogger(__name__)

# WikiText-2: the paper windows its train split; the local copy in shared/data has only test/validation.
DEFAULT_DATASETS = ("boolq", "mmlu", "humaneval", "siqa", "hellaswag", "c4", "wikitext2:test", "pydoc")
FINDINGS_REDUCERS = ("mean_map", "norms", "fingerprints", "experts")


@dataclass(frozen=True)
class FindingsRun:
    data: tuple[str, ...] = option(DEFAULT_DATASETS, DATA_HELP, aliases=("datasets",))
    model: ModelConfig = option(factory=ModelConfig)
    samples: int = option(64, "samples per dataset (the paper: 64)")
    data_seed: int = option(1, DATA_SEED_HELP)
    data_dir: str | None = option(None, DATA_DIR_HELP)
    dataset_pairs: tuple[str, ...] | None = option(
        None,
        "Finding 2 boxplot pairs A-B of --data names, e.g. boolq-boolq,mmlu-boolq (default: every dataset with "
        "itself and the cross pairs of the first three tasks)",
    )
    check_samples: int = option(
        16, "items (all datasets together, one batch) whose exact LLMDcos checks the matrix; 0: no check"
    )
    save_maps: bool = option(False, "also save each dataset's mean map (4 bytes per weight)")
    save_fingerprints: bool = option(
        False,
        "keep each dataset's per-sample fingerprints (float16: layers x sketch-dim x 2 bytes per sample); the "
        "findings need only their sums, the pairs and the check, all computed within the run",
    )
    # no in-batch Grams: Finding 2 pairs items through fingerprints and the check runs a pass of its own;
    # texts of similar length batched together (less padding, the same numbers)
    activation: ActivationConfig = option(
        factory=lambda: ActivationConfig(sort_by_length=True, reducers=FINDINGS_REDUCERS)
    )


def is_corpus(name: str) -> bool:
    return name.partition(":")[0] in CORPORA


def default_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Every dataset with itself, and every cross pair of the first three tasks (with boolq, mmlu,
    humaneval first this is the paper's Fig. 3: BoolQ-BoolQ, MMLU-MMLU, HE-HE, MMLU-BoolQ, ...)."""
    tasks = [n for n in names if not is_corpus(n)][:3]
    return [(n, n) for n in names] + [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]


def paired_items(n_a: int, n_b: int, same: bool) -> list[tuple[int, int]]:
    """The paper's pairing: item k with item k; within one dataset item k with item k + n/2."""
    if same:
        if n_a < 2:
            raise UserError("a dataset paired with itself needs at least 2 samples")
        return [(k, (k + n_a // 2) % n_a) for k in range(n_a)]
    return [(k, k) for k in range(min(n_a, n_b))]


def range_mean(per_layer, rng, n_layers: int) -> float:
    a, b = rng.resolve(n_layers)
    vals = list(per_layer)[a:b]
    return float(sum(vals) / len(vals))


def _check_matrix(model, tok, texts_by_name, fp_paths, cfg, total, names, anatomy) -> dict:
    """Exact LLMDcos of a few items of every dataset (its shortest, to keep the pass cheap), all in
    one batch (in-batch Gram = exact), against the fingerprint estimate of the same pairs:
    per-pair errors and the subset matrix."""
    n_layers = anatomy.n_layers
    k = max(2, total // len(names))
    ks = {n: min(k, len(texts_by_name[n])) for n in names}
    chosen = {}
    for n in names:
        lengths = [len(tok(t)["input_ids"]) for t in texts_by_name[n]]
        chosen[n] = sorted(sorted(range(len(lengths)), key=lambda i: (lengths[i], i))[: ks[n]])
    texts = [texts_by_name[n][i] for n in names for i in chosen[n]]
    owner = [n for n in names for _ in range(ks[n])]
    exact_cfg = ActivationConfig(
        target=cfg.target, batch_size=len(texts), max_length=cfg.max_length, reducers=("grams",)
    )
    ((_ids, exact),) = analyze(model, tok, texts, exact_cfg, anatomy=anatomy).batch_llmdcos
    exact = (exact.double() + exact.double().transpose(1, 2)) / 2  # symmetric up to float rounding
    fp = torch.cat([read_fingerprints(fp_paths[n], chosen[n]) for n in names])  # [M, L, m]
    est = torch.einsum("nlm,klm->lnk", fp.double(), fp.double())
    err = (est - exact).abs()
    iu = torch.triu_indices(len(texts), len(texts), 1)
    pair_err = err[:, iu[0], iu[1]].flatten()
    a, b = DEEP.resolve(n_layers)
    deep_exact, deep_est = exact[a:b].mean(0), est[a:b].mean(0)  # [M, M]
    idx = {n: [i for i, o in enumerate(owner) if o == n] for n in names}
    sub_exact, sub_est = [], []
    for x in names:
        row_e, row_f = [], []
        for y in names:
            cells = [(i, j) for i in idx[x] for j in idx[y] if i != j]
            row_e.append(float(sum(deep_exact[i, j] for i, j in cells) / len(cells)))
            row_f.append(float(sum(deep_est[i, j] for i, j in cells) / len(cells)))
        sub_exact.append(row_e)
        sub_est.append(row_f)
    diff = (torch.tensor(sub_exact) - torch.tensor(sub_est)).abs()
    m = fp.shape[-1]
    return {
        "samples_per_dataset": ks,
        "items": chosen,
        "n_pairs": int(iu.shape[1]),
        "n_layers": n_layers,
        "sketch_dim": m,
        "pair_error_mean": float(pair_err.mean()),
        "pair_error_p99": float(pair_err.quantile(0.99)),
        "pair_error_max": float(pair_err.max()),
        "matrix_exact": sub_exact,
        "matrix_fingerprint": sub_est,
        "matrix_error_max": float(diff.max()),
        "standard_error_bound": math.sqrt(2 / m),
        "note": "standard error of one fingerprint LLMDcos is sqrt((1 + cos^2) / m) <= sqrt(2 / m)",
    }


def _experts(finding1: dict, names: list[str]) -> dict:
    """Mixture-of-experts models: each dataset's expert usage (layer x expert shares) and, for every
    pair of datasets, how far they use the same experts."""
    usage = {n: finding1[n]["experts"]["usage"] for n in names}
    sim = {f"{a}|{b}": usage_similarity(usage[a], usage[b]) for i, a in enumerate(names) for b in names[i + 1 :]}
    return {
        "layers": usage[names[0]]["layers"],
        "usage": usage,
        "similarity": sim,
        "note": "token_share / mass_share: each MoE layer's routed tokens / activation mass per expert (rows sum "
        "to 1); similarity: cosine of two datasets' shares and Jaccard overlap of their top experts",
    }


def _pair_values(fp_paths, pairs, counts) -> dict:
    out, cache = {}, {}
    for a, b in pairs:
        items = paired_items(counts[a], counts[b], a == b)
        cache = {n: cache[n] if n in cache else read_fingerprints(fp_paths[n]) for n in {a, b}}  # at most two in memory
        fa, fb = cache[a], cache[b]
        ia, ib = [i for i, _ in items], [j for _, j in items]
        vals = (fa[ia].double() * fb[ib].double()).sum(-1)  # [K, L]
        out[f"{a}|{b}"] = {
            "n_pairs": len(items),
            "same_dataset": a == b,
            "pairing": "item k with item k + n/2" if a == b else "item k with item k",
            "per_layer": vals.T.float().tolist(),
        }  # [L][K]
    return out


def subdir(name: str) -> str:
    """A dataset's folder in the run directory (a file path given as dataset becomes one safe name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "data"


def _dataset_run(run: FindingsRun, name: str) -> ActivationsRun:
    return ActivationsRun(
        model=run.model,
        data=(name,),
        samples=run.samples,
        data_seed=run.data_seed,
        data_dir=run.data_dir,
        activation=run.activation,
    )


def parse_pairs(spec, names: list[str]) -> list[tuple[str, str]] | None:
    """('a-b', 'c-d') or 'a-b,c-d' -> [(a, b), (c, d)]; a name may itself contain '-', so every
    split point is tried."""
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else spec
    out = []
    for item in (x.strip() for x in items if x.strip()):
        cuts = [(item[:i], item[i + 1 :]) for i, ch in enumerate(item) if ch == "-"]
        found = [c for c in cuts if c[0] in names and c[1] in names]
        if len(found) != 1:
            raise UserError(f"pair {item!r}: write it as A-B with A and B among --data ({', '.join(names)})")
        out.append(found[0])
    return out


def _start(run: FindingsRun, out: Path, resume: bool, writer: bool) -> None:
    """A fresh run directory, or, with resume, the same configuration as the one in `out`."""
    if not resume:
        if writer:
            prepare_out(out)
        return
    check_resumable(out, asdict(run), ignore=("pairs", "sources"))  # both resolved after loading the data
    out.mkdir(parents=True, exist_ok=True)


def run_findings(run: FindingsRun, ctx: RunContext, model=None, tokenizer=None) -> dict:
    """Findings 1-3 into `out`; under torchrun every process takes its share of each dataset's
    batches and rank 0 alone writes (the other ranks return {}); resume=True continues a killed run."""
    from ..anatomy import discover

    names = list(run.data)
    if not names or len(set(names)) != len(names) or len({subdir(n) for n in names}) != len(names):
        raise UserError(f"datasets must be distinct and non-empty, got {', '.join(names) or 'none'}")
    if not run.activation.sketch_dim:
        raise UserError("findings needs fingerprints: the sketch dimension must not be 0")
    if run.samples < 2:
        raise UserError(f"findings needs at least 2 samples per dataset, got {run.samples}")
    if get_target(run.activation.target).needs_continuation:
        raise UserError(
            f"findings compares corpora too, which have no gold answers: use max_logit or lm_loss "
            f"(`activations --target {run.activation.target}` runs task datasets with their answers)"
        )
    pairs = parse_pairs(run.dataset_pairs, names)
    out = Path(ctx.out)
    _start(run, out, ctx.resume, ctx.writer)
    if model is None:
        model, tokenizer = load(run.model, ctx.device)
    loaded = {}
    for spec in names:
        texts, source = load_texts(spec, run.samples, run.data_seed, tokenizer=tokenizer, data_dir=run.data_dir)
        loaded[spec] = (texts, source)
    pairs = pairs if pairs is not None else default_pairs(names)
    for a, b in pairs:
        if a not in loaded or b not in loaded:
            raise UserError(f"pair {a}-{b} names a dataset that is not in --data ({', '.join(names)})")
    anatomy = discover(model, run.activation.allow_uncovered)
    if ctx.writer:
        write_json(
            out / "config.json", {**asdict(run), "pairs": pairs, "sources": {n: s for n, (_, s) in loaded.items()}}
        )
        write_json(out / "env.json", environment(model, run.activation.sketch_seed))
    finding1, streams = {}, {}
    for name in names:
        log.info("%s: %d samples", name, len(loaded[name][0]))
        texts, source = loaded[name]
        res, streams[name] = run_dataset(
            ctx,
            out / subdir(name),
            _dataset_run(run, name),
            model,
            tokenizer,
            DatasetTexts(texts, source),
            run.save_maps,
        )
        if ctx.writer:
            finding1[name] = {"kind": "corpus" if is_corpus(name) else "task", **res}
    if not ctx.writer:
        return {}
    fp_paths = {n: out / subdir(n) / "fingerprints.safetensors" for n in names}
    check = None
    if run.check_samples:
        check = _check_matrix(
            model,
            tokenizer,
            {n: loaded[n][0] for n in names},
            fp_paths,
            run.activation,
            run.check_samples,
            names,
            anatomy,
        )
    result = findings_result(
        run, anatomy, names, {n: len(loaded[n][0]) for n in names}, finding1, streams, pairs, fp_paths, check
    )
    write_findings(out, result, fp_paths, run.save_fingerprints)
    return result


def write_findings(out: Path, result: dict, fp_paths: dict, keep_fingerprints: bool) -> None:
    """The write part: results.json last; the per-sample fingerprints go unless asked to stay."""
    write_json(out / "results.json", result)
    if not keep_fingerprints:
        for p in fp_paths.values():
            p.unlink(missing_ok=True)


def findings_result(run: FindingsRun, anatomy, names, counts, finding1, streams, pairs, fp_paths, check) -> dict:
    """The compute part: Findings 2 and 3 from the datasets' fingerprint sums and files."""
    n_layers = anatomy.n_layers
    mean_cos = {}
    for i, a in enumerate(names):
        for b in names[i:]:
            mean_cos[f"{a}|{b}"] = mean_pair_llmdcos(streams[a], None if a == b else streams[b])
    key = {(a, b): f"{a}|{b}" if f"{a}|{b}" in mean_cos else f"{b}|{a}" for a in names for b in names}
    matrix = [[range_mean(mean_cos[key[a, b]], DEEP, n_layers) for b in names] for a in names]
    summary = {
        k: {"shallow": range_mean(v, SHALLOW, n_layers), "deep": range_mean(v, DEEP, n_layers)}
        for k, v in mean_cos.items()
    }
    for v in summary.values():
        v["drop"] = v["shallow"] - v["deep"]
    result = {
        "kind": "findings",
        "model": run.model.name,
        "n_layers": n_layers,
        "layer_index_base": 0,
        "index_note": INDEX_NOTE,
        "datasets": names,
        "corpora": [n for n in names if is_corpus(n)],
        "samples": counts,
        "gammas": [gamma_key(g) for g in run.activation.gammas],
        "sketch_dim": run.activation.sketch_dim,
        "ranges": {r.name: r.describe(n_layers) for r in (SHALLOW, DEEP)},
        "finding1": finding1,
        "mean_llmdcos": mean_cos,
        "finding2": {"pairs": _pair_values(fp_paths, pairs, counts), "summary": summary},
        "finding3": {
            "datasets": names,
            "layer_range": DEEP.describe(n_layers),
            "matrix": matrix,
            "method": "mean over all cross pairs (distinct items on the diagonal) of the fingerprint "
            "LLMDcos, averaged over the deep layers",
            "check": check,
        },
        "coverage": anatomy.coverage(),
        "fingerprint_files": "kept: DIR/<dataset>/fingerprints.safetensors (int8 x fingerprint_scale)"
        if run.save_fingerprints
        else "removed once used (their sums stay in samples.safetensors); --save-fingerprints keeps them",
    }
    if anatomy.experts:
        result["experts"] = _experts(finding1, names)
    return result
