"""Where sample texts come from.

- a file: .txt/.md (one sample per paragraph, i.e. blank-line separated), .jsonl (a
  `text` field, or the field named), .csv (a `text` column, or the column named);
- `pydoc`: Python documentation prose shipped with CPython (pydoc_data.topics);
- `pycode`: function definitions from a fixed list of Python standard-library modules.

Every loader returns texts in a deterministic order; `sample` draws a seeded subset.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import random
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Callable

from ..errors import UserError

# modules chosen for plain, self-contained code; read in this order
_PYCODE_MODULES = (
    "bisect.py", "heapq.py", "textwrap.py", "fractions.py", "statistics.py", "difflib.py", "shlex.py",
    "string.py", "functools.py", "colorsys.py", "calendar.py", "base64.py", "json/encoder.py",
    "json/decoder.py", "csv.py", "fnmatch.py", "glob.py", "ipaddress.py", "quopri.py", "graphlib.py",
)
_MIN_CHARS = 200
_MAX_CHARS = 4000


def _pydoc() -> list[str]:
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= _MIN_CHARS and not para.startswith(("*", "+", "-", "=", ">>>")):
                out.append(para[:_MAX_CHARS])
    return out


def _pycode() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for rel in _PYCODE_MODULES:
        path = root / rel
        if not path.is_file():
            continue
        src = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                seg = textwrap.dedent(ast.get_source_segment(src, node, padded=True) or "")
                if _MIN_CHARS <= len(seg) <= _MAX_CHARS:
                    out.append(seg)
    return out


EMBEDDED: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "pydoc": ("Python documentation prose (pydoc_data.topics, CPython %s)" % sys.version.split()[0], _pydoc),
    "pycode": ("Python standard-library function definitions (CPython %s)" % sys.version.split()[0], _pycode),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_text_file(path: str | Path, field: str = "text") -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file not found: {p}")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read data file {p}: {e.__class__.__name__}") from e
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        texts = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{p}:{n}: malformed JSON line ({e.msg})") from e
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise UserError(f"{p}:{n}: no string field {field!r}")
            texts.append(row[field])
    elif suffix == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
        if rows and field not in rows[0]:
            raise UserError(f"{p}: no column {field!r} (columns: {', '.join(rows[0])})")
        texts = [r[field] for r in rows]
    else:
        texts = [para.strip() for para in raw.replace("\r\n", "\n").split("\n\n")]
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise UserError(f"{p}: no samples found (empty dataset)")
    return texts


def sample(texts: list[str], n: int | None, seed: int) -> list[str]:
    """n texts drawn without replacement with a seeded RNG (all, in order, if n is None)."""
    if n is None:
        return list(texts)
    if n < 1:
        raise UserError(f"number of samples must be >= 1, got {n}")
    if n > len(texts):
        raise UserError(f"asked for {n} samples but the data has only {len(texts)}")
    idx = random.Random(seed).sample(range(len(texts)), n)
    return [texts[i] for i in idx]


def load_texts(spec: str, n: int | None = None, seed: int = 0, field: str = "text") -> tuple[list[str], dict]:
    """Texts from an embedded domain name or a file, plus a record of where they came from."""
    if spec in EMBEDDED:
        desc, fn = EMBEDDED[spec]
        texts = fn()
        source = {"name": spec, "source": desc, "rows": len(texts)}
    else:
        p = Path(spec)
        if not p.exists() and "/" not in spec and "." not in spec:
            raise UserError(f"unknown data {spec!r}: give a file path or one of {', '.join(EMBEDDED)}")
        texts = read_text_file(p, field)
        source = {"name": p.name, "path": str(p.resolve()), "sha256": _sha256(p), "rows": len(texts)}
    picked = sample(texts, n, seed)
    source.update({"samples": len(picked), "seed": seed})
    return picked, source
