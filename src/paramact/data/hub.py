"""The Hugging Face hub, through the optional `datasets` package, with the ids the paper used.

Each HubSpec names the hub dataset (and config / data files) and converts one hub row into
the canonical row of the local readers (formats.py, corpora.py), so everything downstream
is the same whichever source served the data. Nothing here is imported at package import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UserError


@dataclass(frozen=True)
class HubSpec:
    path: str
    config: str | None = None
    splits: tuple[tuple[str, str], ...] = ()  # (canonical split, hub split)
    data_files: tuple[tuple[str, str], ...] = ()  # (hub split, file inside the repo), for raw-file repos
    convert: Callable[[dict], dict | None] = field(default=lambda row: dict(row))  # None drops the row
    note: str = ""

    def hub_split(self, split: str) -> str:
        return dict(self.splits).get(split, split)

    def describe(self) -> str:
        return self.path + (f" ({self.config})" if self.config else "")


def has_datasets() -> bool:
    try:
        import datasets  # noqa: F401
    except ImportError:
        return False
    return True


def load_rows(hub: HubSpec, split: str) -> tuple[list[dict], dict]:
    """Canonical rows of one split from the hub, plus a record of what was loaded."""
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"reading {hub.describe()} from the Hugging Face hub needs the `datasets` package "
            "(pip install datasets), or give local files with --data-dir / PARAMACT_DATA_DIR"
        ) from None
    hub_split = hub.hub_split(split)
    kwargs = {"split": hub_split}
    if hub.data_files:
        kwargs["data_files"] = dict(hub.data_files)
    try:
        ds = datasets.load_dataset(hub.path, hub.config, **kwargs)
        rows = [r for r in (hub.convert(dict(row)) for row in ds) if r is not None]
    except UserError:
        raise
    except Exception as e:  # network, missing split, script datasets: one line, not a traceback
        raise UserError(
            f"cannot load {hub.describe()} split {hub_split!r} from the hub: "
            f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    record = {
        "hub_id": hub.path,
        "hub_config": hub.config,
        "hub_split": hub_split,
        "hub_data_files": dict(hub.data_files) or None,
        "datasets_version": getattr(datasets, "__version__", None),
        "fingerprint": getattr(ds, "_fingerprint", None),
    }
    if hub.note:
        record["note"] = hub.note
    return rows, record


def _malformed(name: str, row: dict, what: str) -> UserError:
    return UserError(f"malformed {name} row from the hub ({what}): {str(row)[:80]}")


def boolq(row: dict) -> dict:
    return {"passage": row["passage"], "question": row["question"], "label": bool(row["answer"])}


def mmlu(row: dict) -> dict:
    if len(row["choices"]) != 4:
        raise _malformed("mmlu", row, "expected 4 choices")
    return {
        "subject": row["subject"],
        "question": row["question"],
        "choices": tuple(row["choices"]),
        "answer": int(row["answer"]),
    }


def siqa(row: dict) -> dict:
    return {**{k: row[k] for k in ("context", "question", "answerA", "answerB", "answerC")}, "label": int(row["label"])}


def piqa(row: dict) -> dict:
    return {"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"], "label": int(row["label"])}


def hellaswag(row: dict) -> dict | None:
    if str(row.get("label", "")).strip() == "":
        return None  # the test split is unlabelled
    return {
        "activity_label": row["activity_label"],
        "ctx": row["ctx"],
        "ctx_a": row.get("ctx_a"),
        "ctx_b": row.get("ctx_b"),
        "endings": tuple(row["endings"]),
        "label": int(row["label"]),
    }


def gsm8k(row: dict) -> dict:
    return {"question": row["question"], "answer": row["answer"]}


def humaneval(row: dict) -> dict:
    return {k: row[k] for k in ("task_id", "prompt", "entry_point", "canonical_solution", "test")}


def text(row: dict) -> dict:
    return {"text": row["text"]}


def stsb(row: dict) -> dict:  # SetFit/stsb: text1, text2, label (0-5)
    return {"a": row["text1"], "b": row["text2"], "score": float(row["label"]), "genre": ""}


def sick(row: dict) -> dict:
    return {
        "a": row["sentence_A"],
        "b": row["sentence_B"],
        "score": float(row["relatedness_score"]),
        "pair_id": str(row.get("id", "")),
        "entailment": str(row.get("label", "")),
    }


def ted(row: dict) -> dict:  # davidstap/ted_talks zh-cn_en: one column per language
    return {"zh": row["zh-cn"], "en": row["en"], "talk": str(row.get("talk_name", "")), "seg": ""}
