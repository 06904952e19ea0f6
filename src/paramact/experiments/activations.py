"""`paramact activations`: one engine pass per dataset, written as a run directory.

DIR/config.json, DIR/env.json, DIR/mean_map.safetensors (keyed by HF parameter name),
DIR/fingerprints.safetensors (streamed to disk batch by batch), DIR/samples.safetensors
(per-sample, per-layer norms and sums, target values), and DIR/results.json last. With several datasets each gets
DIR/<name>/ (a complete activation run) and DIR/results.json adds the cross-dataset
LLMDcos per layer estimated from fingerprints.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import distributed
from ..anatomy import discover
from ..api import ActivationConfig, Analysis
from ..context import RunContext
from ..data import load_answers, load_texts
from ..density import gamma_key
from ..errors import UserError
from ..experts import usage_summary
from ..fields import DATA_DIR_HELP, DATA_SEED_HELP, option
from ..models import ModelConfig
from ..runs import TensorFileWriter, check_resumable, environment, prepare_out, read_tensors, write_json, write_tensors
from ..targets import get_target

log = logging.getLogger(__name__)


DATA_HELP = (
    "registry datasets (boolq, mmlu, c4, ...; `paramact data list`), embedded domains (pydoc, pycode), or "
    ".txt (paragraphs) / .jsonl / .csv files; comma-separated or repeated"
)


@dataclass(frozen=True)
class ActivationsRun:
    data: tuple[str, ...] = option((), DATA_HELP, aliases=("datasets", "dataset"))
    model: ModelConfig = option(factory=ModelConfig)
    samples: int | None = option(64, "samples per dataset, drawn with --data-seed")
    data_seed: int = option(1, DATA_SEED_HELP)
    text_field: str = option("text", "jsonl field / csv column holding the text", flag="field")
    data_dir: str | None = option(None, DATA_DIR_HELP)
    activation: ActivationConfig = option(factory=ActivationConfig)


class _FingerprintStream:
    """Streams each batch's fingerprints to DIR/fingerprints.safetensors and keeps only
    their running sum: the mean LLMDcos between two datasets over all their pairs is the
    dot product of their mean fingerprints, so a dataset matrix needs no per-sample data."""

    def __init__(
        self, path: Path | None, n: int, n_layers: int, dim: int, meta: dict | None = None, resume: bool = False
    ):
        self.writer = None
        if path is not None:
            self.writer = TensorFileWriter(path, "fingerprints", (n, n_layers, dim), torch.float16, meta, resume)
        self.sum = torch.zeros(n_layers, dim, dtype=torch.float64)
        self.sq = torch.zeros(n_layers, dtype=torch.float64)
        self.n = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"sum": self.sum, "sq": self.sq, "n": torch.tensor(self.n)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sum, self.sq, self.n = state["sum"].clone(), state["sq"].clone(), int(state["n"])

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def __call__(self, index: list[int], fp: torch.Tensor) -> None:
        if self.writer is not None:
            self.writer.write(index, fp.to(torch.float16))  # unit-scale values: < 1e-3 relative
        f = fp.double()
        self.sum += f.sum(0)
        self.sq += (f * f).sum((0, 2))
        self.n += f.shape[0]


def mean_pair_llmdcos(a: _FingerprintStream, b: _FingerprintStream | None = None) -> list[float]:
    """Per layer: mean fingerprint LLMDcos over all cross pairs, or over the distinct pairs
    (i != j: different items) of one dataset when b is None."""
    if b is None:
        n = a.n
        return ((torch.einsum("lm,lm->l", a.sum, a.sum) - a.sq) / max(n * (n - 1), 1)).tolist()
    return (torch.einsum("lm,lm->l", a.sum, b.sum) / (a.n * b.n)).tolist()


def _results(an: Analysis, source: dict) -> dict:
    res = {
        "source": source,
        "n_samples": int(an.norms.shape[0]),
        "n_truncated": an.n_truncated,
        "max_length": an.meta["max_length"],
        "layer_index_base": 0,
        "coverage": an.anatomy.coverage(),
        "layers": an.layers,
        "sample_norm_mean": an.norms.mean(0).tolist(),
    }
    if an.expert_tokens is not None:
        res["experts"] = {
            "usage": usage_summary(an.expert_tokens, an.expert_mass, an.anatomy.moe_layers),
            "density": an.expert_layers,
        }
    return res


def _finished(out: Path, n_layers: int, dim: int) -> tuple[dict, _FingerprintStream]:
    """A dataset that a resumed run had already finished: its results and fingerprint sums."""
    res = json.loads((out / "results.json").read_text())
    stream = _FingerprintStream(None, 0, n_layers, dim)
    saved = read_tensors(out / "samples.safetensors")
    if "fingerprint_sum" in saved:
        stream.load_state_dict(
            {
                "sum": saved["fingerprint_sum"],
                "sq": saved["fingerprint_sq"],
                "n": saved["target_values"].new_tensor(saved["target_values"].numel()),
            }
        )
    return res, stream


def _gather_fingerprints(
    out: Path, stream: _FingerprintStream, batches: list[list[int]], shard: tuple[int, int], meta: dict
):
    """Rank 0 assembles DIR/fingerprints.safetensors from every rank's shard file."""
    from safetensors import safe_open

    rank, world = shard
    n = sum(len(b) for b in batches)
    distributed.all_reduce_([stream.sum, stream.sq])
    stream.n = n
    distributed.barrier()  # every shard file is complete
    if rank == 0:
        L, m = stream.sum.shape
        final = TensorFileWriter(out / "fingerprints.safetensors", "fingerprints", (n, L, m), torch.float16, meta)
        for r in range(world):
            path = out / ".shards" / f"fingerprints.rank{r}.safetensors"
            with safe_open(str(path), "pt") as f:
                rows = f.get_tensor("fingerprints")
            own = distributed.owned_samples(batches, r, world)
            final.write(own, rows[own])
        final.close()
        shutil.rmtree(out / ".shards", ignore_errors=True)
    distributed.barrier()


@dataclass(frozen=True)
class DatasetTexts:
    """One dataset as a pass reads it: its texts, where they came from, and for targets that
    score an answer (gold_logprob) one continuation per text."""

    texts: list[str]
    source: dict
    continuations: list[str] | None = None


def run_dataset(
    ctx: RunContext, out: Path, run: ActivationsRun, model, tokenizer, data: DatasetTexts, save_map: bool = True
):
    """One dataset's pass into `out` (checkpointed, resumable, shared among the processes): every
    process computes its share, rank 0 writes and returns (results, fingerprint stream), the other
    ranks (None, stream)."""
    texts, source = data.texts, data.source
    anatomy = discover(model, run.activation.allow_uncovered)
    n_layers, dim = anatomy.n_layers, run.activation.sketch_dim
    out = Path(out)
    if ctx.resume and (out / "results.json").is_file():
        return _finished(out, n_layers, dim)
    config = {**asdict(run), "data": source["name"], "source": source, "processes": ctx.world}
    if ctx.writer:
        out.mkdir(parents=True, exist_ok=True) if ctx.resume else prepare_out(out)
        if ctx.resume:
            check_resumable(out, config)
        write_json(out / "config.json", config)
        write_json(out / "env.json", environment(model, run.activation.sketch_seed))
    if ctx.world > 1:
        distributed.barrier()
    meta = {
        "model": run.model.name,
        "target": run.activation.target,
        "n_samples": str(len(texts)),
        "batch_size": str(run.activation.batch_size),
    }
    stream = None
    if dim:
        fmeta = {
            **meta,
            "sketch_dim": dim,
            "sketch_seed": run.activation.sketch_seed,
            "normalized": "sketch / exact layer norm: f_i . f_j estimates LLMDcos(i, j)",
        }
        path = out / "fingerprints.safetensors"
        if ctx.world > 1:  # each rank fills its own rows of a scratch file; rank 0 assembles them
            path = out / ".shards" / f"fingerprints.rank{ctx.rank}.safetensors"
        stream = _FingerprintStream(path, len(texts), n_layers, dim, fmeta, ctx.resume)
    an = ckpt = None
    try:
        an, ckpt = distributed.run_pass(
            ctx,
            model,
            tokenizer,
            texts,
            run.activation,
            out,
            {"run": asdict(run), "source": source},
            data.continuations,
            on_fingerprints=stream,
            extra_state={"fingerprints": stream} if stream else None,
            anatomy=anatomy,
        )
    finally:
        if stream is not None:
            own = distributed.owned_samples(an.meta["batches"], *ctx.shard) if an is not None else None
            stream.writer.close(complete=own is not None and stream.n == len(own))
    if ctx.world > 1 and stream is not None:
        _gather_fingerprints(out, stream, an.meta["batches"], ctx.shard, fmeta)
    if not ctx.writer:
        if ckpt is not None:
            ckpt.clear()
        return None, stream
    res = write_dataset(out, an, source, meta, stream, save_map)
    if ckpt is not None:
        ckpt.clear()
    return res, stream


def write_dataset(
    out: Path, an: Analysis, source: dict, meta: dict, stream: _FingerprintStream | None, save_map: bool = True
) -> dict:
    """The files of one finished dataset pass; results.json last. Returns the results."""
    if save_map:
        write_tensors(out / "mean_map.safetensors", an.mean_map, meta)
    per_sample = {"norms": an.norms, "sums": an.sums, "target_values": an.target_values}
    if an.expert_tokens is not None:  # [N, MoE layers, experts]
        per_sample.update(expert_tokens=an.expert_tokens, expert_mass=an.expert_mass)
    if stream is not None:
        per_sample.update(fingerprint_sum=stream.sum, fingerprint_sq=stream.sq)
    write_tensors(out / "samples.safetensors", per_sample, meta)
    res = _results(an, source)
    write_json(out / "results.json", res)
    return res


def run_activations(run: ActivationsRun, ctx: RunContext, model=None, tokenizer=None) -> dict:
    """Run (or, with ctx.resume, continue after a crash) an activations job into ctx.out."""
    from ..models import load

    if not run.data:
        raise UserError("activations needs --data (on the command line or in --config)")
    out = Path(ctx.out)
    answers = [None] * len(run.data)
    if get_target(run.activation.target).needs_continuation:  # the gold answers, before anything is written
        answers = [load_answers(spec, run.samples, run.data_seed, data_dir=run.data_dir) for spec in run.data]
    if ctx.resume:
        if (out / "results.json").is_file() and not any(out.glob("*/checkpoint.safetensors")):
            if len(run.data) == 1:
                raise UserError(f"{out} already holds a finished run; nothing to resume")
        out.mkdir(parents=True, exist_ok=True)
    elif ctx.writer:
        prepare_out(out)
    if model is None:
        model, tokenizer = load(run.model, ctx.device)
    discover(model, run.activation.allow_uncovered)  # an unsupported model fails before any data is read
    loaded = [
        load_texts(spec, run.samples, run.data_seed, run.text_field, tokenizer=tokenizer, data_dir=run.data_dir)
        for spec in run.data
    ]
    streams, results = {}, {}
    for (texts, source), gold in zip(loaded, answers):
        name = source["name"]
        log.info("%s: %d samples", name, len(texts))
        sub = out if len(loaded) == 1 else out / name
        if gold is not None:
            source = {**source, "continuations": "the gold answer of each item (data.load_answers)"}
        results[name], streams[name] = run_dataset(ctx, sub, run, model, tokenizer, DatasetTexts(texts, source, gold))
    if not ctx.writer:
        return {}
    if len(loaded) == 1:
        return results
    names = list(streams)
    cross = {}
    if run.activation.sketch_dim:
        for i, a in enumerate(names):
            for b in names[i:]:
                cross[f"{a}|{b}"] = mean_pair_llmdcos(streams[a], None if a == b else streams[b])
    summary = {
        "datasets": names,
        "layer_index_base": 0,
        "gammas": [gamma_key(g) for g in run.activation.gammas],
        "mean_llmdcos_fingerprint": cross,
        "runs": {n: n for n in names},
    }
    write_json(out / "results.json", summary)
    return {**results, "summary": summary}
