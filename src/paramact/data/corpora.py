"""Readers for the corpora and sentence-pair datasets' official file formats.

Same contract as formats.py (`Read(rows, files)`, UserError on a malformed row). Rows:

- c4:         text
- wikitext2:  text, one row per line of `wiki.*.raw` exactly as the Hugging Face builder makes
              them (the line with its '\\n'; a blank line becomes '')
- stsb:       a, b, score (0-5), genre
- sick:       a, b, score (relatedness 1-5), pair_id, entailment
- ted_zh_en:  zh, en, talk, seg (IWSLT/WIT3 XML: the en side of `en-zh` and the zh side of
              `zh-en` share talk ids and segment ids)
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import UserError
from .formats import Read, field, jsonl, read_text


def read_c4(path: Path, split: str) -> Read:
    """C4 json lines (`c4-*.json.gz`, or .jsonl/.json): one document per line with a `text` field."""
    return Read([{"text": field(path, n, row, "text")} for n, row in jsonl(path)], [path])


def read_wikitext(path: Path, split: str) -> Read:
    read_text(path)  # existence and UTF-8 check, one error message for all readers
    # iterate the file object exactly as the HF builder does: it splits on '\n' (and '\r'), never on U+2028
    with open(path, encoding="utf-8") as f:
        rows = [{"text": line if line.strip() else ""} for line in f]
    return Read(rows, [path])


def _score(path: Path, n: int, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{path}:{n}: malformed row: score {raw!r:.30} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise UserError(f"{path}:{n}: malformed row: score {value} outside [{low:g}, {high:g}]")
    return value


def read_stsb(path: Path, split: str) -> Read:
    """`sts-{train,dev,test}.csv`: tab-separated, no header: genre, file, year, id, score, s1, s2[, src1, src2]."""
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        cols = next(csv.reader([line.rstrip("\r")], delimiter="\t", quoting=csv.QUOTE_NONE))
        if len(cols) not in (7, 9):
            raise UserError(f"{path}:{n}: malformed STS-B row: {len(cols)} tab-separated columns (expected 7 or 9)")
        rows.append({"a": cols[5], "b": cols[6], "score": _score(path, n, cols[4], 0.0, 5.0), "genre": cols[0]})
    return Read(rows, [path])


SICK_SETS = {"train": "TRAIN", "validation": "TRIAL", "test": "TEST"}


def read_sick(path: Path, split: str) -> Read:
    """`SICK.txt`: tab-separated with a header; the SemEval_set column (TRAIN/TRIAL/TEST) is the split."""
    raw = [(n, line.rstrip("\r")) for n, line in enumerate(read_text(path).split("\n"), 1) if line.strip()]
    if not raw:
        raise UserError(f"{path}: empty file")
    header = raw[0][1].split("\t")
    need = ("pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_label", "SemEval_set")
    missing = [c for c in need if c not in header]
    if missing:
        raise UserError(f"{path}: not a SICK.txt file: missing columns {', '.join(missing)}")
    col = {c: header.index(c) for c in need}
    want = SICK_SETS[split]
    rows = []
    for n, line in raw[1:]:
        cols = line.split("\t")
        if len(cols) != len(header):
            raise UserError(f"{path}:{n}: malformed SICK row: {len(cols)} columns, header has {len(header)}")
        if cols[col["SemEval_set"]] not in SICK_SETS.values():
            raise UserError(f"{path}:{n}: malformed SICK row: SemEval_set {cols[col['SemEval_set']]!r}")
        if cols[col["SemEval_set"]] == want:
            rows.append(
                {
                    "a": cols[col["sentence_A"]],
                    "b": cols[col["sentence_B"]],
                    "score": _score(path, n, cols[col["relatedness_score"]], 1.0, 5.0),
                    "pair_id": cols[col["pair_ID"]],
                    "entailment": cols[col["entailment_label"]],
                }
            )
    return Read(rows, [path])


def _segments(path: Path) -> list[tuple[str, str, str]]:
    """(talk id, segment id, text) of every <seg> in file order."""
    try:
        root = ET.fromstring(read_text(path))
    except ET.ParseError as e:
        raise UserError(f"{path}: malformed XML ({e})") from e
    out = []
    for doc in root.iter("doc"):
        for seg in doc.iter("seg"):
            out.append((doc.get("docid", ""), seg.get("id", ""), (seg.text or "").strip()))
    return out


def ted_companion(en_path: Path) -> Path:
    """`.../en-zh/IWSLT17.TED.tst2016.en-zh.en.xml` -> `.../zh-en/IWSLT17.TED.tst2016.zh-en.zh.xml`."""
    name = en_path.name.replace(".en-zh.en.xml", ".zh-en.zh.xml")
    for candidate in (en_path.parent.parent / "zh-en" / name, en_path.with_name(name)):
        if candidate.is_file():
            return candidate
    raise UserError(f"data file not found: {name} (the zh side of {en_path}; expected in zh-en/ beside en-zh/)")


def read_ted(path: Path, split: str) -> Read:
    if not path.name.endswith(".en-zh.en.xml"):
        raise UserError(f"{path}: expected the English side of a WIT3 en-zh test set (*.en-zh.en.xml)")
    zh_path = ted_companion(path)
    en, zh = _segments(path), _segments(zh_path)
    if [(t, s) for t, s, _ in en] != [(t, s) for t, s, _ in zh]:
        raise UserError(f"{path} and {zh_path} are not parallel (talk/segment ids differ)")
    rows = [{"zh": z, "en": e, "talk": t, "seg": s} for (t, s, e), (_, _, z) in zip(en, zh, strict=True)]
    return Read(rows, [path, zh_path])
