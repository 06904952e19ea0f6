"""`paramact activations`: one engine pass per dataset, written as a run directory.

DIR/config.json, DIR/env.json, DIR/mean_map.safetensors (keyed by HF parameter name),
DIR/fingerprints.safetensors (streamed to disk batch by batch), DIR/samples.safetensors
(per-sample, per-layer norms and sums, target values), and DIR/results.json last. With several datasets each gets
DIR/<name>/ (a complete activation run) and DIR/results.json adds the cross-dataset
LLMDcos per layer estimated from fingerprints.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..api import ActivationConfig, Analysis, analyze
from ..data import load_texts
from ..density import gamma_key
from ..runs import TensorFileWriter, environment, prepare_out, write_json, write_tensors
from ..anatomy import discover

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivationsRun:
    model: str
    data: tuple[str, ...]
    samples: int | None = 64
    data_seed: int = 1  # the paper's analysis scripts use seed 1
    text_field: str = "text"
    data_dir: str | None = None  # official dataset layouts (default $PARAMACT_DATA_DIR)
    dtype: str | None = None
    device: str | None = None
    trust_remote_code: bool = False
    activation: ActivationConfig = field(default_factory=ActivationConfig)


class _FingerprintStream:
    """Streams each batch's fingerprints to DIR/fingerprints.safetensors and keeps only
    their running sum: the mean LLMDcos between two datasets over all their pairs is the
    dot product of their mean fingerprints, so a dataset matrix needs no per-sample data."""

    def __init__(self, path: Path, n: int, n_layers: int, dim: int, meta: dict):
        self.writer = TensorFileWriter(path, "fingerprints", (n, n_layers, dim), torch.float16, meta)
        self.sum = torch.zeros(n_layers, dim, dtype=torch.float64)
        self.sq = torch.zeros(n_layers, dtype=torch.float64)
        self.n = 0

    def __call__(self, index: list[int], fp: torch.Tensor) -> None:
        self.writer.write(index, fp)
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
    return {
        "source": source,
        "n_samples": int(an.norms.shape[0]),
        "n_truncated": an.n_truncated,
        "max_length": an.meta["max_length"],
        "layer_index_base": 0,
        "layers": an.layers,
        "sample_norm_mean": an.norms.mean(0).tolist(),
    }


def _run_one(out: Path, run: ActivationsRun, model, tokenizer, texts, source, env, progress):
    out = prepare_out(out)
    write_json(out / "config.json", {**asdict(run), "data": source["name"], "source": source})
    write_json(out / "env.json", env)
    meta = {"model": run.model, "target": run.activation.target, "n_samples": str(len(texts))}
    stream = None
    if run.activation.sketch_dim:
        fmeta = {**meta, "sketch_dim": run.activation.sketch_dim, "sketch_seed": run.activation.seed,
                 "normalized": "sketch / exact layer norm: f_i . f_j estimates LLMDcos(i, j)"}
        n_layers = discover(model).n_layers
        stream = _FingerprintStream(out / "fingerprints.safetensors", len(texts), n_layers,
                                    run.activation.sketch_dim, fmeta)
    try:
        an = analyze(model, tokenizer, texts, run.activation, progress=progress, on_fingerprints=stream)
    finally:
        if stream is not None:
            stream.writer.close()
    write_tensors(out / "mean_map.safetensors", an.mean_map, meta)
    write_tensors(out / "samples.safetensors",
                  {"norms": an.norms, "sums": an.sums, "target_values": an.target_values}, meta)
    res = _results(an, source)
    write_json(out / "results.json", res)
    return res, stream


def run_activations(run: ActivationsRun, out: Path, model=None, tokenizer=None, progress: bool = True) -> dict:
    from ..models import load_model

    out = prepare_out(Path(out))
    if model is None:
        model, tokenizer = load_model(run.model, run.dtype, run.device, run.trust_remote_code)
    loaded = [
        load_texts(spec, run.samples, run.data_seed, run.text_field, tokenizer=tokenizer, data_dir=run.data_dir)
        for spec in run.data
    ]
    env = environment(model, run.activation.seed)
    streams, results = {}, {}
    for texts, source in loaded:
        name = source["name"]
        log.info("%s: %d samples", name, len(texts))
        sub = out if len(loaded) == 1 else out / name
        results[name], streams[name] = _run_one(sub, run, model, tokenizer, texts, source, env, progress)
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
