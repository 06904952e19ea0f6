"""Run directories: atomic writes, environment capture, and the files of a run.

Nothing here computes; it only persists what the library returned. Every file is
written to a temporary name and renamed into place, and results.json is written last,
so a run directory with results.json is complete and one without it is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import torch

from .errors import UserError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary only
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_json_default) + "\n", encoding="utf-8")


def read_json(path: Path):
    """A JSON file's value, or one clear UserError (unreadable, or not JSON)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e


def _json_default(o):
    if isinstance(o, (torch.dtype, torch.device, Path)):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}  # no shared storage
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


class TensorFileWriter:
    """Fill one [N, ...] tensor of a safetensors file row block by row block, on disk.

    The header is written first (shape and dtype are known up front) into PATH.partial,
    rows go to their offsets as they arrive, and close() renames the file into place once
    every row was written: memory stays constant however many samples a run has. With
    resume=True an existing PATH.partial of the same layout is reopened (rows are rewritten
    idempotently), so a killed run continues where its last checkpoint stood.
    """

    _DTYPES: ClassVar[dict] = {torch.float16: ("F16", 2), torch.float32: ("F32", 4)}

    def __init__(
        self,
        path: Path,
        name: str,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        metadata: dict | None = None,
        resume: bool = False,
    ):
        code, size = self._DTYPES[dtype]
        self.path, self.dtype = Path(path), dtype
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.row_bytes = size * int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else size
        header = {name: {"dtype": code, "shape": list(shape), "data_offsets": [0, self.row_bytes * shape[0]]}}
        if metadata:
            header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        head = len(raw).to_bytes(8, "little") + raw
        self._data_start = len(head)
        size_all = self._data_start + self.row_bytes * shape[0]
        if resume and not self.partial.is_file() and self.path.is_file():
            os.replace(self.path, self.partial)  # published before the crash: reopen it
        if resume and self.partial.is_file() and self.partial.stat().st_size == size_all:
            with open(self.partial, "rb") as f:
                if f.read(len(head)) == head:
                    self._f = open(self.partial, "r+b")
                    return
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.partial, "w+b")
        self._f.write(head)
        self._f.truncate(size_all)

    def write(self, index: list[int], rows: torch.Tensor) -> None:
        data = rows.detach().to(self.dtype).contiguous().cpu()
        for i, r in zip(index, data):
            self._f.seek(self._data_start + i * self.row_bytes)
            self._f.write(r.numpy().tobytes())

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self, complete: bool = True) -> None:
        """Publish the file if complete; otherwise leave PATH.partial for a resume."""
        self._f.close()
        if complete:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.partial, 0o666 & ~umask)
            os.replace(self.partial, self.path)

    __call__ = write


def read_checkpoint(path: Path, key: str, remedy: str, what: str = "checkpoint") -> tuple[dict, dict]:
    """(tensors, metadata) of a checkpoint file whose metadata names configuration `key`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise UserError(f"corrupt {what} {path}: {remedy}") from e
    if meta.get("key") != key:
        raise UserError(f"{path} belongs to a different configuration; start a new --out or drop --resume")
    return tensors, meta


def config_key(config) -> str:
    """sha256 of a configuration's JSON: names the run a checkpoint belongs to."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


class Checkpoint:
    """Reducer state saved every `every` batches, atomically, in one safetensors file.

    `key` identifies the configuration (model, data, options, shard); a checkpoint of
    another configuration is refused rather than silently mixed in.
    """

    def __init__(self, path: Path, every: int, key: str, resume: bool):
        if every < 1:
            raise UserError(f"checkpoint interval must be >= 1 batch, got {every}")
        self.path, self.every, self.key, self.resume = Path(path), every, key, resume

    @classmethod
    def for_process(cls, folder: Path, shard: tuple[int, int], every: int, config, resume: bool) -> Checkpoint:
        """This process's checkpoint in `folder` (one per rank under torchrun), keyed by `config`."""
        name = "checkpoint.safetensors" if shard[1] == 1 else f"checkpoint.rank{shard[0]}.safetensors"
        return cls(Path(folder) / name, every, config_key({**config, "shard": list(shard)}), resume)

    def load(self, parts: dict) -> int:
        if not self.resume or not self.path.is_file():
            return 0
        tensors, meta = read_checkpoint(self.path, self.key, "delete it to restart this run from scratch")
        for name, part in parts.items():
            prefix = name + "/"
            part.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        return int(meta["next_batch"])

    def due(self, next_batch: int, total: int) -> bool:
        return next_batch < total and next_batch % self.every == 0

    def save(self, next_batch: int, parts: dict) -> None:
        for part in parts.values():
            if hasattr(part, "flush"):
                part.flush()  # rows a checkpoint counts must be on disk before it
        tensors = {f"{name}/{k}": v for name, part in parts.items() for k, v in part.state_dict().items()}
        write_tensors(self.path, tensors, {"key": self.key, "next_batch": str(next_batch)})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(
            f"cannot read tensors from {path}: {str(e).splitlines()[0] if str(e) else 'corrupt file'}"
        ) from e


def installed_packages() -> dict[str, str]:
    """name -> version of every distribution importable by this interpreter, sorted by name."""
    from importlib.metadata import distributions

    found = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name and name.lower() not in found:
            found[name.lower()] = d.version
    return dict(sorted(found.items()))


def environment(model=None, seed: int | None = None) -> dict:
    """Versions, device and seed: what a reader needs to trust or repeat a run."""
    import transformers

    env = {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "seed": seed,
        "packages": installed_packages(),
    }
    env["paramact"] = env["packages"].get("paramact", "source")
    if model is not None:
        p = next(model.parameters())
        env.update({"device": str(p.device), "dtype": str(p.dtype).replace("torch.", "")})
        if p.device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(p.device)
    return env


def resumed_environment(out: Path, env: dict) -> dict:
    """env, with the environments of the earlier sessions of a resumed run (its env.json) under
    `earlier`, oldest first: cells kept from a run on another machine keep the record of where they ran."""
    path = Path(out) / "env.json"
    if not path.is_file():
        return env
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path} is not an environment record: {e}") from e
    earlier = [*old.pop("earlier", []), old]
    return {**env, "earlier": earlier}


def check_resumable(out: Path, config: dict, ignore: tuple[str, ...] = ()) -> None:
    """With --resume: the run in `out` must be unfinished and (its config.json, if written) this configuration."""
    if (Path(out) / "results.json").is_file():
        raise UserError(f"{out} already holds a finished run; nothing to resume")
    path = Path(out) / "config.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    mine = json.loads(json.dumps(config, default=_json_default))
    if {k: v for k, v in old.items() if k not in ignore} != {k: v for k, v in mine.items() if k not in ignore}:
        raise UserError(f"{path} differs from this command: cannot resume a different run")


def prepare_out(out: Path) -> Path:
    """Create the run directory; refuse to mix a new run into a finished one."""
    out = Path(out)
    if (out / "results.json").exists():
        raise UserError(f"{out} already holds a finished run (results.json); choose another --out")
    if (out / "config.json").exists() or any(out.glob("*/config.json")):
        raise UserError(f"{out} holds an unfinished run: add --resume to continue it, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {out}: {e.strerror or e}") from e
    return out
