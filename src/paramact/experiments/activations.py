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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..api import ActivationConfig, Analysis, analyze
from ..data import load_answers, load_texts
from ..density import gamma_key
from ..experts import usage_summary
from ..errors import UserError
from ..runs import Checkpoint, check_resumable, TensorFileWriter, environment, prepare_out, read_tensors, write_json, write_tensors
from .. import distributed
from ..anatomy import discover
from ..targets import get_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivationsRun:
    model: str
    data: tuple[str, ...]
    samples: int | None = 64
    data_seed: int = 1  # the paper's analysis scripts use seed 1
    text_field: str = "text"
    data_dir: str | None = None  # official dataset layouts (None: none; the shell passes $PARAMACT_DATA_DIR)
    dtype: str | None = None
    device: str | None = None
    device_map: str | None = None  # "auto": spread the model over every device (accelerate)
    trust_remote_code: bool = False
    checkpoint_every: int = 20  # batches between checkpoints (0: none)
    activation: ActivationConfig = field(default_factory=ActivationConfig)


class _FingerprintStream:
    """Streams each batch's fingerprints to DIR/fingerprints.safetensors and keeps only
    their running sum: the mean LLMDcos between two datasets over all their pairs is the
    dot product of their mean fingerprints, so a dataset matrix needs no per-sample data."""

    def __init__(self, path: Path | None, n: int, n_layers: int, dim: int, meta: dict | None = None,
                 resume: bool = False):
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
        res["experts"] = {"usage": usage_summary(an.expert_tokens, an.expert_mass, an.anatomy.moe_layers),
                          "density": an.expert_layers}
    return res


def _finished(out: Path, n_layers: int, dim: int) -> tuple[dict, _FingerprintStream]:
    """A dataset that a resumed run had already finished: its results and fingerprint sums."""
    res = json.loads((out / "results.json").read_text())
    stream = _FingerprintStream(None, 0, n_layers, dim)
    saved = read_tensors(out / "samples.safetensors")
    if "fingerprint_sum" in saved:
        stream.load_state_dict({"sum": saved["fingerprint_sum"], "sq": saved["fingerprint_sq"],
                                "n": saved["target_values"].new_tensor(saved["target_values"].numel())})
    return res, stream


def _gather_fingerprints(out: Path, stream: _FingerprintStream, batches: list[list[int]], shard: tuple[int, int],
                         meta: dict):
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


def run_dataset(out: Path, run: ActivationsRun, model, tokenizer, texts, source, env, progress, resume,
                shard: tuple[int, int] = (0, 1), save_map: bool = True, continuations=None, anatomy=None):
    """One dataset's pass into `out` (checkpointed, resumable, sharded over processes); rank 0
    returns (results, fingerprint stream), other ranks (None, stream). continuations: one per
    text, for targets that score one (gold_logprob)."""
    rank, world = shard
    anatomy = anatomy or discover(model, run.activation.allow_uncovered)
    n_layers, dim = anatomy.n_layers, run.activation.sketch_dim
    out = Path(out)
    if resume and (out / "results.json").is_file():
        return _finished(out, n_layers, dim)
    config = {**asdict(run), "data": source["name"], "source": source, "processes": world}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True) if resume else prepare_out(out)
        if resume:
            check_resumable(out, config)
        write_json(out / "config.json", config)
        write_json(out / "env.json", env)
    if world > 1:
        distributed.barrier()
    meta = {"model": run.model, "target": run.activation.target, "n_samples": str(len(texts)),
            "batch_size": str(run.activation.batch_size)}
    stream = None
    if dim:
        fmeta = {**meta, "sketch_dim": dim, "sketch_seed": run.activation.seed,
                 "normalized": "sketch / exact layer norm: f_i . f_j estimates LLMDcos(i, j)"}
        path = out / "fingerprints.safetensors"
        if world > 1:  # each rank fills its own rows of a scratch file; rank 0 assembles them
            path = out / ".shards" / f"fingerprints.rank{rank}.safetensors"
        stream = _FingerprintStream(path, len(texts), n_layers, dim, fmeta, resume)
    ckpt = None
    if run.checkpoint_every:
        ckpt = Checkpoint.for_process(out, shard, run.checkpoint_every, {"run": asdict(run), "source": source}, resume)
    an = None
    try:
        an = analyze(model, tokenizer, texts, run.activation, continuations, progress=progress and rank == 0,
                     on_fingerprints=stream, checkpoint=ckpt, extra_state={"fingerprints": stream} if stream else None,
                     shard=shard, merge=distributed.merge if world > 1 else None, anatomy=anatomy)
    finally:
        if stream is not None:
            own = distributed.owned_samples(an.meta["batches"], rank, world) if an is not None else None
            stream.writer.close(complete=own is not None and stream.n == len(own))
    if world > 1 and stream is not None:
        _gather_fingerprints(out, stream, an.meta["batches"], shard, fmeta)
    if rank != 0:
        if ckpt is not None:
            ckpt.clear()
        return None, stream
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
    if ckpt is not None:
        ckpt.clear()
    return res, stream


def run_activations(run: ActivationsRun, out: Path, model=None, tokenizer=None, progress: bool = True,
                    resume: bool = False) -> dict:
    """Run (or, with resume=True, continue after a crash) an activations job into `out`."""
    from ..models import load_model

    out = Path(out)
    shard = distributed.init()
    answers = [None] * len(run.data)
    if get_target(run.activation.target).needs_continuation:  # the gold answers, before anything is written
        answers = [load_answers(spec, run.samples, run.data_seed, data_dir=run.data_dir) for spec in run.data]
    if resume:
        if (out / "results.json").is_file() and not any(out.glob("*/checkpoint.safetensors")):
            if len(run.data) == 1:
                raise UserError(f"{out} already holds a finished run; nothing to resume")
        out.mkdir(parents=True, exist_ok=True)
    elif shard[0] == 0:
        prepare_out(out)
    if model is None:
        device = run.device or distributed.device_for_rank()
        model, tokenizer = load_model(run.model, run.dtype, device, run.trust_remote_code, run.device_map)
    anatomy = discover(model, run.activation.allow_uncovered)  # an unsupported model fails before any data is read
    loaded = [
        load_texts(spec, run.samples, run.data_seed, run.text_field, tokenizer=tokenizer, data_dir=run.data_dir)
        for spec in run.data
    ]
    env = environment(model, run.activation.seed)
    streams, results = {}, {}
    for (texts, source), gold in zip(loaded, answers):
        name = source["name"]
        log.info("%s: %d samples", name, len(texts))
        sub = out if len(loaded) == 1 else out / name
        if gold is not None:
            source = {**source, "continuations": "the gold answer of each item (data.load_answers)"}
        results[name], streams[name] = run_dataset(sub, run, model, tokenizer, texts, source, env, progress, resume,
                                                   shard, continuations=gold, anatomy=anatomy)
    if shard[0] != 0:
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
