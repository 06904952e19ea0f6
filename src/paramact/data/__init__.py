"""The data layer: every dataset of the paper, rendered into its exact prompts.

- registry.py     one DatasetSpec per dataset (boolq, mmlu, siqa, piqa, hellaswag, humaneval, gsm8k,
                  c4, wikitext2, stsb, sick, ted_zh_en, and the embedded pydoc / pycode); the corpora
                  (CORPORA) and those with token windows / a perplexity text, derived from the specs
- embedded.py     the embedded domains' texts (pydoc, pycode), shipped with Python
- formats.py,     readers of the official file formats (tasks; corpora and sentence pairs)
  corpora.py
- hub.py          the Hugging Face hub via the optional `datasets` package, with the paper's ids
- loading.py      source resolution (path > data_dir > package > hub), sha256 records; no environment
                  variable is read here (the shell passes $PARAMACT_DATA_DIR, ENV_DATA_DIR, as data_dir)
- prompts.py      the paper's templates, GSM8K demos, lm-eval-style contexts
- analysis.py     seeded analysis prompts (64 per dataset in the paper; 256-token windows for corpora)
- calibration.py  token windows and calibration sequences for pruning
- choice_items.py multiple-choice items: letter scoring and log-likelihood forms
- pairs.py        STS-B / SICK scored pairs, TED zh-en parallel pairs
- sources.py      `load_texts`, the one entry point the engine uses: datasets, embedded domains, the
                  user's own files
- commands.py     `paramact data list|show`
"""

from .analysis import analysis_prompts
from .calibration import WordTokenizer, calibration, corpus_windows
from .choice_items import MC_TASKS, McItem, mc_items
from .loading import ENV_DATA_DIR, Split, load_split, resolve_data_dir
from .pairs import ParallelPair, StsPair, parallel_pairs, sts_pairs
from .registry import CORPORA, EMBEDDED, PERPLEXITY_CORPORA, REGISTRY, WINDOWED_CORPORA, DatasetSpec, get_spec
from .sources import load_answers, load_texts, read_records, read_text_file, render_records, sample

__all__ = [
    "CORPORA",
    "EMBEDDED",
    "ENV_DATA_DIR",
    "MC_TASKS",
    "PERPLEXITY_CORPORA",
    "REGISTRY",
    "WINDOWED_CORPORA",
    "DatasetSpec",
    "McItem",
    "ParallelPair",
    "Split",
    "StsPair",
    "WordTokenizer",
    "analysis_prompts",
    "calibration",
    "corpus_windows",
    "get_spec",
    "load_answers",
    "load_split",
    "load_texts",
    "mc_items",
    "parallel_pairs",
    "read_records",
    "read_text_file",
    "render_records",
    "resolve_data_dir",
    "sample",
    "sts_pairs",
]
