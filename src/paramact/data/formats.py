"""Readers for the task datasets' official file formats.

Every reader takes one located file and a split name and returns `Read(rows, files)`:
canonical rows (plain dicts, in file order) and every file it read, companions included
(PIQA/SIQA label files). A row that does not fit the format raises UserError naming the
file and line. Canonical row fields, per dataset:

- boolq:      passage, question, label (bool)
- mmlu:       subject, question, choices (4 str), answer (0-3)
- siqa:       context, question, answerA, answerB, answerC, label (1-3, as in the release)
- piqa:       goal, sol1, sol2, label (0/1)
- hellaswag:  activity_label, ctx, ctx_a, ctx_b (None in the llama.cpp text format), endings (4), label (0-3)
- gsm8k:      question, answer (rationale ending in "#### N")
- humaneval:  task_id, prompt, entry_point, canonical_solution, test
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import NamedTuple

from ..errors import UserError


class Read(NamedTuple):
    rows: list[dict]
    files: list[Path]
    notes: tuple[str, ...] = ()  # what a user must know about this copy (derived formats)


def read_text(path: Path) -> str:
    """The file's text (gunzipped for .gz), UTF-8; a missing or undecodable file is a UserError."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read data file {path}: {e.__class__.__name__}") from e


def lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line) of every non-blank line; splits on '\\n' only (never on U+2028)."""
    out = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if line.strip():
            out.append((n, line))
    return out


def jsonl(path: Path) -> list[tuple[int, dict]]:
    out = []
    for n, line in lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: malformed JSON line ({e.msg})") from e
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        out.append((n, row))
    return out


def field(path: Path, n: int, row: dict, key: str, kind: type = str):
    value = row.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UserError(f"{path}:{n}: malformed row: field {key!r} must be {kind.__name__}, got {value!r:.60}")
    return value


def _label_file(path: Path) -> Path:
    """PIQA/SIQA companion: X.jsonl -> X-labels.lst beside it."""
    return path.with_name(path.name[: -len(".jsonl")] + "-labels.lst")


def _labels(path: Path, count: int, allowed: tuple[str, ...]) -> list[int]:
    rows = lines(path)
    if len(rows) != count:
        raise UserError(f"{path}: {len(rows)} labels for {count} rows (files must be aligned line by line)")
    out = []
    for n, line in rows:
        if line.strip() not in allowed:
            raise UserError(f"{path}:{n}: malformed label {line.strip()!r} (expected one of {', '.join(allowed)})")
        out.append(int(line.strip()))
    return out


def read_boolq(path: Path, split: str) -> Read:
    """SuperGLUE `val.jsonl` (label: bool or "true"/"false") or Google's `dev.jsonl` (answer: bool)."""
    rows, string_labels = [], False
    for n, row in jsonl(path):
        key = "label" if "label" in row else "answer"
        raw = row.get(key)
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            label = raw.lower() == "true"
        elif isinstance(raw, bool):
            label = raw
        else:
            raise UserError(f'{path}:{n}: malformed row: {key!r} must be a boolean or "true"/"false", got {raw!r:.40}')
        rows.append(
            {"passage": field(path, n, row, "passage"), "question": field(path, n, row, "question"), "label": label}
        )
        string_labels = string_labels or isinstance(raw, str)
    notes = (
        ('string labels "true"/"false" (OpenCompass packaging), not SuperGLUE\'s booleans',) if string_labels else ()
    )
    return Read(rows, [path], notes)


MMLU_SUFFIXES = ("_dev", "_val", "_test")


def mmlu_subject(path: Path) -> str:
    """`abstract_algebra_val.csv` -> 'abstract_algebra' (the cais/mmlu `subject` value); auxiliary_train -> ''."""
    stem = path.stem
    for suffix in MMLU_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return ""  # auxiliary_train rows carry an empty subject on the hub (cais/mmlu)


def read_mmlu(path: Path, split: str) -> Read:
    """One MMLU CSV: no header, columns question, A, B, C, D, answer letter; quoted fields may hold newlines."""
    subject = mmlu_subject(path)
    rows = []
    reader = csv.reader(io.StringIO(read_text(path), newline=""))  # never str.splitlines: U+0085 occurs in fields
    try:
        for record in reader:
            if not record:
                continue
            if len(record) != 6 or record[5].strip() not in ("A", "B", "C", "D"):
                raise UserError(
                    f"{path}:{reader.line_num}: malformed MMLU row: expected 6 columns ending in a letter A-D"
                )
            rows.append(
                {
                    "subject": subject,
                    "question": record[0],
                    "choices": tuple(record[1:5]),
                    "answer": "ABCD".index(record[5].strip()),
                }
            )
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed CSV ({e})") from e
    return Read(rows, [path])


def read_siqa(path: Path, split: str) -> Read:
    labels_path = _label_file(path)
    data = jsonl(path)
    labels = _labels(labels_path, len(data), ("1", "2", "3"))
    rows = [
        {
            **{k: field(path, n, row, k) for k in ("context", "question", "answerA", "answerB", "answerC")},
            "label": label,
        }
        for (n, row), label in zip(data, labels, strict=True)
    ]
    return Read(rows, [path, labels_path])


def read_piqa(path: Path, split: str) -> Read:
    labels_path = _label_file(path)
    data = jsonl(path)
    labels = _labels(labels_path, len(data), ("0", "1"))
    rows = [
        {**{k: field(path, n, row, k) for k in ("goal", "sol1", "sol2")}, "label": label}
        for (n, row), label in zip(data, labels, strict=True)
    ]
    return Read(rows, [path, labels_path])


def _endings(path: Path, n: int, value) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(e, str) for e in value):
        raise UserError(f"{path}:{n}: malformed row: 'endings' must be a list of 4 strings")
    return tuple(value)


def read_hellaswag(path: Path, split: str) -> Read:
    """Official `hellaswag_{split}.jsonl`, or the derived llama.cpp text format (6 lines per task)."""
    if path.suffix == ".txt":
        return _read_hellaswag_txt(path)
    rows = []
    for n, row in jsonl(path):
        label = row.get("label")
        if isinstance(label, str) and label.strip().isdigit():
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 3:
            raise UserError(f"{path}:{n}: malformed row: 'label' must be 0-3, got {label!r:.40}")
        rows.append(
            {
                "activity_label": field(path, n, row, "activity_label"),
                "ctx": field(path, n, row, "ctx"),
                "ctx_a": row.get("ctx_a"),
                "ctx_b": row.get("ctx_b"),
                "endings": _endings(path, n, row.get("endings")),
                "label": label,
            }
        )
    return Read(rows, [path])


def _read_hellaswag_txt(path: Path) -> Read:
    """klosax/llama.cpp format: 'activity_label: ctx', label, 4 endings (bracket markers already stripped)."""
    raw = read_text(path).split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    if len(raw) % 6:
        raise UserError(f"{path}: {len(raw)} lines is not a multiple of 6 (llama.cpp HellaSwag format)")
    rows = []
    for start in range(0, len(raw), 6):
        head, label, *endings = raw[start : start + 6]
        if ": " not in head or label not in ("0", "1", "2", "3"):
            raise UserError(
                f"{path}:{start + 1}: malformed HellaSwag task (expected 'label: context' then a label 0-3)"
            )
        activity, ctx = head.split(": ", 1)
        rows.append(
            {
                "activity_label": activity,
                "ctx": ctx,
                "ctx_a": None,
                "ctx_b": None,
                "endings": tuple(endings),
                "label": int(label),
            }
        )
    return Read(
        rows,
        [path],
        (
            "llama.cpp text format derived from hellaswag_val.jsonl: [title]/[step]/[header] markers "
            "stripped, activity_label split off at the first ': ', no ctx_a/ctx_b",
        ),
    )


def read_gsm8k(path: Path, split: str) -> Read:
    rows = []
    for n, row in jsonl(path):
        answer = field(path, n, row, "answer")
        if "#### " not in answer:
            raise UserError(f"{path}:{n}: malformed row: 'answer' has no '#### ' final answer")
        rows.append({"question": field(path, n, row, "question"), "answer": answer})
    return Read(rows, [path])


def read_humaneval(path: Path, split: str) -> Read:
    keys = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
    return Read([{k: field(path, n, row, k) for k in keys} for n, row in jsonl(path)], [path])
