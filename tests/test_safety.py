"""Safe defaults: no remote code unless asked, config files through yaml.safe_load / JSON."""

import json

import pytest

from conftest import cli


def test_remote_code_is_refused_without_the_flag(tmp_path, data_file):
    d = tmp_path / "custom"
    d.mkdir()
    marker = tmp_path / "code_ran"
    (d / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    (d / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}})
    )
    r = cli("--quiet", "activations", "--model", str(d), "--data", str(data_file), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "trust_remote_code" in r.stderr
    assert not marker.exists()  # the shipped code never ran


def test_config_file_yaml_and_overrides(tmp_path, model_dir, data_file):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model: {model_dir}\ndata: {data_file}\nsamples: 4\nbatch-size: 2\nsketch_dim: 128\n"
        f"gammas: [0.001, 0.01]\nout: {tmp_path / 'from_config'}\n"
    )
    r = cli("--quiet", "activations", "--config", str(cfg), "--samples", "3")  # the command line wins
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "from_config" / "config.json").read_text())
    assert saved["samples"] == 3 and saved["activation"]["batch_size"] == 2
    assert saved["activation"]["sketch_dim"] == 128 and saved["activation"]["gammas"] == [0.001, 0.01]


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: x\nsamplez: 3\n", "unknown config key 'samplez'"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("samples: many\n", "config key 'samples' in"),
        ("device-map: everywhere\n", "'everywhere' is not one of auto"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    r = cli("--quiet", "activations", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_findings_and_sts_read_config_files(tmp_path, model_dir):
    """The same --config mechanism for the experiment commands: YAML lists for comma options."""
    cfg = tmp_path / "findings.yaml"
    cfg.write_text(
        f"model: {model_dir}\ndatasets: [pydoc, pycode]\nsamples: 3\nmax-length: 24\n"
        f"sketch_dim: 256\ncheck-samples: 0\ngammas: [0.001]\nout: {tmp_path / 'f'}\n"
    )
    r = cli("--quiet", "findings", "--config", str(cfg), "--batch-size", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((tmp_path / "f" / "config.json").read_text())
    assert saved["data"] == ["pydoc", "pycode"] and saved["samples"] == 3
    assert saved["activation"]["batch_size"] == 3 and saved["activation"]["gammas"] == [0.001]
    bad = tmp_path / "sts.json"
    bad.write_text(json.dumps({"model": str(model_dir), "pairz": 5}))
    r = cli("--quiet", "sts", "--config", str(bad), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "unknown config key 'pairz'" in r.stderr and not (tmp_path / "s").exists()
    r = cli("--quiet", "sts", "--model", str(model_dir))
    assert (
        r.returncode == 2
        and r.stderr.strip() == "paramact: error: sts needs --out (on the command line or in --config)"
    )


class _Evil:
    """Unpickling this runs a shell command: what a hostile pytorch_model.bin can do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_weights_with_code_are_refused(tmp_path):
    """Weights come from safetensors; a .bin-only model goes through torch.load(weights_only=True),
    which must refuse a pickle that would run code: one line, exit 2, the code never ran."""
    import pickle

    from tiny import save_tiny

    model = save_tiny(tmp_path / "model", "llama")
    for f in model.glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "pwned"
    with open(model / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"model.embed_tokens.weight": _Evil(marker)}, fh, protocol=2)  # as torch.save writes
    r = cli(
        "--quiet",
        "activations",
        "--model",
        str(model),
        "--data",
        "pydoc",
        "--samples",
        "2",
        "--out",
        str(tmp_path / "r"),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "refused (torch.load weights_only=True)" in r.stderr
    assert not marker.exists() and not (tmp_path / "r").exists()
