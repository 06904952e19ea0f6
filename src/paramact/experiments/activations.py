"""`paramact activations`: one engine pass per dataset, written as a run directory.

DIR/config.json, DIR/env.json, DIR/mean_map.safetensors (keyed by HF parameter name),
DIR/fingerprints.safetensors, and DIR/results.json last. With several datasets each gets
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
from ..runs import environment, prepare_out, write_json, write_tensors
from ..similarity import fingerprint_matrix

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


def _write_one(out: Path, run: ActivationsRun, an: Analysis, source: dict, env: dict) -> dict:
    out = prepare_out(out)
    write_json(out / "config.json", {**asdict(run), "data": source["name"], "source": source})
    write_json(out / "env.json", env)
    meta = {"model": run.model, "target": run.activation.target, "n_samples": str(an.norms.shape[0])}
    write_tensors(out / "mean_map.safetensors", an.mean_map, meta)
    tensors = {"norms": an.norms, "sums": an.sums, "target_values": an.target_values,
               "index": torch.tensor(list(range(an.norms.shape[0])))}
    if an.fingerprints is not None:
        tensors["fingerprints"] = an.fingerprints
    write_tensors(out / "fingerprints.safetensors", tensors, {**meta, "sketch_dim": str(run.activation.sketch_dim),
                                                              "sketch_seed": str(run.activation.seed)})
    res = _results(an, source)
    write_json(out / "results.json", res)
    return res


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
    analyses, results = {}, {}
    for (texts, source), spec in zip(loaded, run.data):
        name = source["name"]
        log.info("%s: %d samples", name, len(texts))
        an = analyze(model, tokenizer, texts, run.activation, progress=progress)
        sub = out if len(run.data) == 1 else out / name
        results[name] = _write_one(sub, run, an, source, env)
        analyses[name] = an
    if len(run.data) == 1:
        return results
    cross = {}
    names = list(analyses)
    for i, a in enumerate(names):
        for b in names[i:]:
            fa, fb = analyses[a].fingerprints, analyses[b].fingerprints
            if fa is None:
                break
            m = fingerprint_matrix(fa, fb)  # [L, Na, Nb]
            if a == b:  # different items of the same dataset, as in the paper
                n = m.shape[1]
                vals = (m.sum((1, 2)) - torch.diagonal(m, dim1=1, dim2=2).sum(1)) / max(n * (n - 1), 1)
            else:
                vals = m.mean((1, 2))
            cross[f"{a}|{b}"] = vals.tolist()
    summary = {
        "datasets": names,
        "layer_index_base": 0,
        "gammas": [gamma_key(g) for g in run.activation.gammas],
        "mean_llmdcos_fingerprint": cross,
        "runs": {n: str(Path(n)) for n in names},
    }
    write_json(out / "results.json", summary)
    return {**results, "summary": summary}
