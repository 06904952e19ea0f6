"""--device-map: accelerate placement is accepted when every weight is resident, and offloaded
weights (meta tensors that accelerate streams in per forward) are refused with one line."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from oracle import rel_err
from tiny import save_tiny


def test_offloaded_weights_are_refused(tmp_path):
    from transformers import AutoModelForCausalLM

    from paramact.errors import UserError
    from paramact.models import check_resident

    path = save_tiny(tmp_path / "model", "llama")
    placement = {
        "model.embed_tokens": "cpu",
        "model.rotary_emb": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "cpu",
        "model.norm": "cpu",
        "lm_head": "cpu",
    }
    model = AutoModelForCausalLM.from_pretrained(path, device_map=placement, offload_folder=str(tmp_path / "off"))
    with pytest.raises(
        UserError,
        match=r"weights \(first model\.layers\.1\.self_attn\.q_proj\.weight\) are "
        r"offloaded by the device map \(cpu, disk\)",
    ):
        check_resident(model)
    check_resident(AutoModelForCausalLM.from_pretrained(path))  # resident: no error


def test_device_map_auto_gives_the_same_statistics(tmp_path, data_file):
    """On this CPU-only machine accelerate places everything on the CPU: the path through
    from_pretrained(device_map="auto") must give the statistics of a plain load."""
    model = save_tiny(tmp_path / "model", "llama")
    args = [
        "--quiet",
        "activations",
        "--model",
        str(model),
        "--data",
        str(data_file),
        "--samples",
        "4",
        "--batch-size",
        "2",
        "--sketch-dim",
        "0",
    ]
    runs = {}
    for name, extra in (("plain", []), ("auto", ["--device-map", "auto"])):
        r = subprocess.run(
            [sys.executable, "-m", "paramact", *args, *extra, "--out", str(tmp_path / name)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = load_file(str(tmp_path / name / "mean_map.safetensors"))
    assert runs["plain"].keys() == runs["auto"].keys()
    assert max(rel_err(runs["auto"][k], runs["plain"][k]) for k in runs["plain"]) <= 1e-6
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["model"]["device_map"] == "auto"


def test_device_map_and_torchrun_exclude_each_other(monkeypatch):
    """The shell refuses the pair before it joins a process group or loads anything."""
    from paramact.cli.environment import RunOptions, make_context
    from paramact.errors import UserError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="under torchrun each process holds its own replica"):
        make_context(RunOptions(), progress=False, device_map="auto")


def test_statistics_through_accelerate_hooks_equal_plain(tmp_path):
    """What dispatch over several GPUs installs, on one CPU: accelerate's AlignDevicesHook around
    every block, the embeddings and the head (inputs moved to each module's execution device,
    outputs back). The engine's mean map and LLMDcos and Wanda's masks must not change."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module, remove_hook_from_module

    import paramact
    from paramact.anatomy import find_blocks
    from paramact.api import ActivationConfig, analyze
    from paramact.prune.driver import prune_model, token_batches
    from paramact.prune.masks import parse_pattern
    from paramact.prune.scores import get_method

    path = save_tiny(tmp_path / "model", "llama")
    model, tok = paramact.load_model(str(path))
    texts = [f"Sample {i}: " + "the cat sat on the mat " * (1 + i % 3) for i in range(6)]
    cfg = ActivationConfig(batch_size=3, sketch_dim=0)
    plain = analyze(model, tok, texts, cfg)
    _, blocks = find_blocks(model)
    hooked = [*blocks, model.model.embed_tokens, model.lm_head]
    for m in hooked:
        add_hook_to_module(m, AlignDevicesHook(execution_device=torch.device("cpu"), io_same_device=True))
    try:
        wrapped = analyze(model, tok, texts, cfg)
        assert all(hasattr(b, "_hf_hook") for b in blocks)
        assert max(rel_err(wrapped.mean_map[k], plain.mean_map[k]) for k in plain.mean_map) <= 1e-6
        for (ia, ca), (ib, cb) in zip(plain.batch_llmdcos, wrapped.batch_llmdcos):
            assert ia == ib and torch.allclose(ca, cb, atol=1e-6)
        batches = token_batches([[5 + (7 * i + j) % 200 for j in range(24)] for i in range(4)], 2)
        dense = {n: p.detach().clone() for n, p in model.named_parameters()}
        wanda, row = get_method("wanda"), parse_pattern("row")
        masks_hooked = prune_model(model, batches, wanda, [0.5] * 3, row).masks()
    finally:
        for m in hooked:
            remove_hook_from_module(m)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(dense[n])
    masks_plain = prune_model(model, batches, wanda, [0.5] * 3, row).masks()
    assert all(torch.equal(masks_plain[k], masks_hooked[k]) for k in masks_plain)
