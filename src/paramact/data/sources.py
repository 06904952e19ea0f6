"""Where sample texts come from: `load_texts`, the one entry point the engine uses.

- a registered dataset (registry.py), rendered into the paper's analysis prompts (analysis.py);
- an embedded domain (embedded.py): `pydoc`, Python documentation prose shipped with CPython,
  and `pycode`, function definitions from a fixed list of standard-library modules;
- a file: .txt/.md (one sample per paragraph, i.e. blank-line separated), .jsonl (a
  `text` field, or the field named), .csv (a `text` column, or the column named).

Every loader returns texts in a deterministic order; `sample` draws a seeded subset.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path

from ..errors import UserError
from .analysis import analysis_answers, analysis_prompts
from .formats import jsonl
from .registry import EMBEDDED, REGISTRY
from .sampling import pick


def read_records(path: str | Path) -> list[dict]:
    """The user's own file as records: .jsonl (one object per line), .csv (header row), else text
    (.txt/.md: one {"text": paragraph} per blank-line separated paragraph)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file not found: {p}")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read data file {p}: {e.__class__.__name__}") from e
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return [{**row, "_line": n} for n, row in jsonl(p)]
    if suffix == ".csv":
        try:
            return [dict(r) for r in csv.DictReader(io.StringIO(raw, newline=""))]
        except csv.Error as e:
            raise UserError(f"{p}: malformed CSV ({e})") from e
    return [{"text": para.strip()} for para in raw.replace("\r\n", "\n").split("\n\n") if para.strip()]


def render_records(
    records: list[dict], fields: str | Mapping[str, str] = "text", template: str | None = None, where: str = "data"
) -> list[str]:
    """One text per record: the value of field `fields`, or `template` filled through the mapping
    `fields` (placeholder -> record field), e.g. template "Q: {q}\nA:" with fields {"q": "question"}."""
    if isinstance(fields, str):
        mapping, template = {"text": fields}, template if template is not None else "{text}"
    elif template is None:
        raise UserError("a field mapping needs a template that uses its names, e.g. 'Q: {q}\\nA:'")
    else:
        mapping = dict(fields)
    texts = []
    for k, rec in enumerate(records, 1):
        values = {}
        for key, column in mapping.items():
            value = rec.get(column)
            if not isinstance(value, str):
                if "_line" in rec:
                    raise UserError(f"{where}:{rec['_line']}: no string field {column!r}")
                if column not in rec:
                    raise UserError(f"{where}: no column {column!r} (columns: {', '.join(rec)})")
                raise UserError(f"{where}: row {k}: no value in column {column!r}")
            values[key] = value
        try:
            texts.append(template.format_map(values))
        except (KeyError, IndexError, ValueError) as e:
            raise UserError(
                f"template {template!r} does not fit the field mapping ({e.__class__.__name__}: {e})"
            ) from e
    return texts


def read_text_file(path: str | Path, field: str = "text") -> list[str]:
    p = Path(path)
    texts = [t for t in render_records(read_records(p), field, where=str(p)) if t and t.strip()]
    if not texts:
        raise UserError(f"{p}: no samples found (empty dataset)")
    return texts


def sample(texts: list[str], n: int | None, seed: int) -> list[str]:
    """n texts drawn without replacement with a seeded RNG (all, in order, if n is None)."""
    return [texts[i] for i in pick(len(texts), n, seed, "the data")]


def load_texts(
    spec: str,
    n: int | None = None,
    seed: int = 0,
    field: str | Mapping[str, str] = "text",
    *,
    split: str | None = None,
    shots: int | None = None,
    tokenizer=None,
    data_dir: str | Path | None = None,
    template: str | None = None,
) -> tuple[list[str], dict]:
    """Texts plus a record of where they came from, for any of:

    - a registered dataset name, optionally `name:split` (`boolq`, `gsm8k:train`, `wikitext2:test`):
      n seeded samples rendered into the paper's analysis prompts (C4/WikiText-2: windows of
      256 tokens of `tokenizer`, whitespace words without one); `field` picks the side of a
      sentence-pair dataset;
    - an embedded domain (pydoc, pycode);
    - a file: .txt/.md paragraphs, .jsonl/.csv with `field` (a column, or a mapping used by `template`).
    """
    name, _, split_in_spec = spec.partition(":")
    if name in REGISTRY and name not in EMBEDDED:
        chosen = split or split_in_spec or None
        texts, source = analysis_prompts(
            name,
            n,
            seed,
            split=chosen,
            shots=shots,
            tokenizer=tokenizer,
            field=field if isinstance(field, str) else None,
            data_dir=data_dir,
        )
        source["name"] = name if chosen is None else f"{name}_{source['split']}"
        return texts, source
    if spec in EMBEDDED:
        desc, fn = EMBEDDED[spec]
        texts = fn()
        source = {"name": spec, "source": desc, "kind": "embedded", "rows": len(texts)}
    else:
        p = Path(spec)
        if not p.exists() and "/" not in spec and "." not in spec:
            raise UserError(
                f"unknown data {spec!r}: give a file path, a dataset ({', '.join(REGISTRY)}), "
                f"or one of {', '.join(EMBEDDED)}"
            )
        records = read_records(p)
        texts = [t for t in render_records(records, field, template, where=str(p)) if t and t.strip()]
        if not texts:
            raise UserError(f"{p}: no samples found (empty dataset)")
        digest = _sha256(p)
        source = {
            "name": p.name,
            "path": str(p.resolve()),
            "sha256": digest,
            "rows": len(texts),
            "kind": "path",
            "files": [{"path": str(p.resolve()), "sha256": digest, "bytes": p.stat().st_size}],
        }
        if not isinstance(field, str) or template is not None:
            source.update(field_mapping=field if isinstance(field, str) else dict(field), template=template)
    picked = sample(texts, n, seed)
    source.update({"samples": len(picked), "seed": seed})
    return picked, source


def load_answers(
    spec: str, n: int | None = None, seed: int = 0, *, split: str | None = None, data_dir: str | Path | None = None
) -> list[str]:
    """The gold answer of each text load_texts(spec, n, seed) returns, in the same order: the
    continuation a target such as gold_logprob scores. Registry question-answer datasets only."""
    name, _, split_in_spec = spec.partition(":")
    if name in REGISTRY and name not in EMBEDDED:
        return analysis_answers(name, n, seed, split=split or split_in_spec or None, data_dir=data_dir)
    raise UserError(
        f"{spec}: gold answers come with the registry's question-answer datasets (boolq, mmlu, siqa, "
        "...); for your own texts pass continuations= to paramact.analyze"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
