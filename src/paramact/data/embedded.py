"""The embedded text domains: sample texts shipped with the Python interpreter, no download.

- `pydoc`: Python documentation prose shipped with CPython (pydoc_data.topics), one text per
  paragraph of at least 200 characters (cut at 4000);
- `pycode`: function definitions from a fixed list of Python standard-library modules.

Each is an `Embedded` (what it is, and its loader); registry.py registers them as datasets.
Both loaders return their texts in a deterministic order.
"""

from __future__ import annotations

import ast
import functools
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics

# modules chosen for plain, self-contained code; read in this order
_PYCODE_MODULES = (
    "bisect.py",
    "heapq.py",
    "textwrap.py",
    "fractions.py",
    "statistics.py",
    "difflib.py",
    "shlex.py",
    "string.py",
    "functools.py",
    "colorsys.py",
    "calendar.py",
    "base64.py",
    "json/encoder.py",
    "json/decoder.py",
    "csv.py",
    "fnmatch.py",
    "glob.py",
    "ipaddress.py",
    "quopri.py",
    "graphlib.py",
)
_MIN_CHARS = 200
_MAX_CHARS = 4000


@dataclass(frozen=True)
class Embedded:
    origin: str  # what the texts are, recorded as the source's location
    load: Callable[[], list[str]]


def pydoc_texts() -> list[str]:
    out = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= _MIN_CHARS and not para.startswith(("*", "+", "-", "=", ">>>")):
                out.append(para[:_MAX_CHARS])
    return out


def pycode_texts() -> list[str]:
    return list(_pycode_cached())


@functools.lru_cache(maxsize=1)
def _pycode_cached() -> tuple[str, ...]:  # parsing 20 modules takes seconds: once per process
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
    return tuple(out)


_PYTHON = sys.version.split()[0]
PYDOC = Embedded(f"Python documentation prose (pydoc_data.topics, CPython {_PYTHON})", pydoc_texts)
PYCODE = Embedded(f"Python standard-library function definitions (CPython {_PYTHON})", pycode_texts)
