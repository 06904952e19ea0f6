"""Shared pieces of the data-layer tests: where the real data lies, synthetic fixtures, a toy tokenizer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data() -> Path:
    """../shared/data, or skip (outside CI) / fail (CI=true) with the reason."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    reason = f"real benchmark data not found at {SHARED_DATA} (see shared/data/SOURCES.md)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI must have ../shared/data beside the repository")
    pytest.skip(reason)


def shared_dataset(name: str) -> Path:
    root = shared_data()
    if not (root / name).is_dir():
        pytest.skip(f"{root / name} is absent; {name} is covered by its synthetic fixture")
    return root


def sha256sums() -> dict[str, str]:
    """relative path -> sha256, from shared/data/SHA256SUMS."""
    out = {}
    for line in (shared_data() / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*").removeprefix("./")] = digest
    return out


def synthetic_dir(tmp_path: Path, layout: dict[str, str]) -> Path:
    """A data directory in tmp_path: {relative official path: synthetic fixture file name} copied in."""
    for rel, fixture in layout.items():
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / fixture, dst)
    return tmp_path


class ByteTokenizer:
    """Deterministic toy tokenizer: UTF-8 bytes are the token ids."""

    name_or_path = "toy-bytes"

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        assert add_special_tokens is False  # the data layer never adds BOS itself
        return {"input_ids": list(text.encode("utf-8"))}

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")
