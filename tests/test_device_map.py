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
    placement = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                 "model.layers.1": "disk", "model.layers.2": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, device_map=placement, offload_folder=str(tmp_path / "off"))
    with pytest.raises(UserError, match=r"weights \(first model\.layers\.1\.self_attn\.q_proj\.weight\) are "
                                        r"offloaded by the device map \(cpu, disk\)"):
        check_resident(model)
    check_resident(AutoModelForCausalLM.from_pretrained(path))  # resident: no error


def test_device_map_auto_gives_the_same_statistics(tmp_path, data_file):
    """On this CPU-only machine accelerate places everything on the CPU: the path through
    from_pretrained(device_map="auto") must give the statistics of a plain load."""
    model = save_tiny(tmp_path / "model", "llama")
    args = ["--quiet", "activations", "--model", str(model), "--data", str(data_file), "--samples", "4",
            "--batch-size", "2", "--sketch-dim", "0"]
    runs = {}
    for name, extra in (("plain", []), ("auto", ["--device-map", "auto"])):
        r = subprocess.run([sys.executable, "-m", "paramact", *args, *extra, "--out", str(tmp_path / name)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = load_file(str(tmp_path / name / "mean_map.safetensors"))
    assert runs["plain"].keys() == runs["auto"].keys()
    assert max(rel_err(runs["auto"][k], runs["plain"][k]) for k in runs["plain"]) <= 1e-6
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["device_map"] == "auto"


def test_device_map_and_torchrun_exclude_each_other(model_dir, monkeypatch):
    from paramact.errors import UserError
    from paramact.models import load_model

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="under torchrun each process holds its own replica"):
        load_model(str(model_dir), device_map="auto")
