"""Analysis inputs: seeded samples of a registered dataset rendered into the paper's prompts.

The paper's activation analysis (the paper, §2) draws 64 random items per dataset (seed 1 in
its scripts) and feeds each prompt alone: BoolQ/MMLU/SIQA/PIQA/HellaSwag 0-shot, GSM8K with
k chain-of-thought demos in a random order (3 by default), HumanEval raw prompts, and random
256-token windows for C4 and WikiText-2.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from . import prompts
from .calibration import WordTokenizer, corpus_windows
from .loading import load_split
from .registry import WINDOWED_CORPORA, DatasetSpec, get_spec
from .sampling import item_rng, pick

PAIR_FIELDS = {"pairs": ("a", "b"), "parallel": ("en", "zh")}


def check_shots(spec: DatasetSpec, shots: int | None) -> int:
    default, most = spec.shots
    if shots is None:
        return default
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= most:
        allowed = f"0-{most}" if most else "0"
        raise UserError(f"{spec.name}: shots must be in {allowed}, got {shots!r}")
    return shots


def mmlu_demos(rows: tuple[dict, ...], subject: str, shots: int) -> list[dict]:
    """The first `shots` demo rows of the item's subject, else the first `shots` rows (auxiliary_train)."""
    same = [r for r in rows if r["subject"] == subject]
    chosen = (same or list(rows))[:shots]
    if len(chosen) < shots:
        raise UserError(f"mmlu: only {len(chosen)} demonstration rows for subject {subject!r}, {shots} shots asked")
    return chosen


def demo_source(path: str | Path | None) -> str | Path | None:
    """Where MMLU demos come from when items come from an explicit path: the same folder, or the
    MMLU root above a single CSV (`.../mmlu/val/x_val.csv` -> `.../mmlu`)."""
    if path is None:
        return None
    p = Path(path)
    return p if p.is_dir() else p.parent.parent


def render_items(
    name: str,
    rows: tuple[dict, ...],
    indices: list[int],
    seed: int,
    shots: int,
    demo_rows: tuple[dict, ...] = (),
    field: str | None = None,
) -> list[str]:
    spec = get_spec(name)
    if name == "gsm8k":
        return [prompts.gsm8k(rows[i], prompts.gsm8k_demos(shots, item_rng(seed, i, "gsm8k-demos"))) for i in indices]
    if name == "mmlu" and shots:
        return [prompts.mmlu_nshot(mmlu_demos(demo_rows, rows[i]["subject"], shots), rows[i]) for i in indices]
    if spec.kind in PAIR_FIELDS and field not in (None, "text"):
        if field not in PAIR_FIELDS[spec.kind]:
            raise UserError(f"{name}: field must be one of {', '.join(PAIR_FIELDS[spec.kind])}, got {field!r}")
        return [rows[i][field] for i in indices]
    return [spec.render(rows[i]) for i in indices]


def _draw(name: str, split: str, n: int | None, seed: int, data_dir, path):
    """The split's rows and the indices of the n items Random(seed) draws (prompts and answers alike)."""
    data = load_split(name, split, data_dir=data_dir, path=path)
    return data, pick(len(data.rows), n, seed, f"{name} {split}")


def analysis_prompts(
    name: str,
    n: int | None = 64,
    seed: int = 1,
    *,
    split: str | None = None,
    shots: int | None = None,
    demo_split: str = "dev",
    tokenizer=None,
    seqlen: int = 256,
    field: str | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> tuple[list[str], dict]:
    """n prompts of dataset `name` in the paper's format, drawn with Random(seed), and their source.

    For C4/WikiText-2 the prompts are decoded `seqlen`-token windows; without a tokenizer the
    windows are of whitespace words (recorded as `window_unit`). For MMLU with shots the demos
    come from `demo_split` ("dev": the official 5 per subject; "auxiliary_train": the paper's
    first 5 rows). For sentence pairs `field` picks the side ("a"/"b", "en"/"zh").
    """
    spec = get_spec(name)
    split = spec.split(split)
    shots = check_shots(spec, shots)
    if name in WINDOWED_CORPORA:
        if n is None:
            raise UserError(f"{name}: give the number of windows to draw")
        tok = tokenizer if tokenizer is not None else WordTokenizer()
        windows, source = corpus_windows(name, tok, n, seqlen, seed, split=split, data_dir=data_dir, path=path)
        texts = [tok.decode(w) for w in windows]
        unit = "tokens" if tokenizer is not None else "whitespace words (no tokenizer given)"
        return texts, {**source, "template": "paper", "window_unit": unit, "samples": len(texts), "seed": seed}
    data, indices = _draw(name, split, n, seed, data_dir, path)
    demo_rows: tuple[dict, ...] = ()
    extra: dict = {}
    if name == "mmlu" and shots:
        demos = load_split("mmlu", demo_split, data_dir=data_dir, path=demo_source(path))
        demo_rows, extra = demos.rows, {"demo_split": demos.split, "demo_files": demos.source["files"]}
    texts = render_items(name, data.rows, indices, seed, shots, demo_rows, field)
    source = {**data.source, **extra, "template": "paper", "shots": shots, "samples": len(texts), "seed": seed}
    if n is not None:
        source["indices"] = indices
    if field not in (None, "text"):
        source["field"] = field
    return texts, source


def analysis_answers(
    name: str,
    n: int | None = 64,
    seed: int = 1,
    *,
    split: str | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> list[str]:
    """The gold continuation (prompts.answer: the paper's answer token, GSM8K's worked answer,
    HumanEval's canonical solution) of each prompt analysis_prompts(name, n, seed) draws, in order."""
    if name in WINDOWED_CORPORA:
        raise UserError(f"{name} is a corpus: its windows have no gold answer")
    data, indices = _draw(name, get_spec(name).split(split), n, seed, data_dir, path)
    out = [prompts.answer(name, data.rows[i]) for i in indices]
    if not all(out):
        raise UserError(f"{name} has no gold answer per item (it is not a question-answer dataset)")
    return out
