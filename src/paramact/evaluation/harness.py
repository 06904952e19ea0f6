"""Zero- and few-shot accuracy scored by lm-evaluation-harness itself, on the local data files.

The optional extra `paramact[lmeval]` installs PyPI `lm-eval`. Each task here is lm-eval's own
registered task config (its YAML: prompt template, choices, target, metrics, few-shot split and
sampler), with one change: `custom_dataset` hands it the rows paramact loaded from the data folder,
so nothing is read from the hub. The model is wrapped in lm-eval's HFLM as the object in memory
(a pruned model is evaluated without being saved), or with scorer="shared-prefix" in
lmeval_model.SharedPrefixLM: an HFLM whose requests paramact's forward computes, each shared
prompt prefix once. The items are the same draw as paramact's own
scorers (`mc_items(task, n, seed)`), so the two protocols can be compared item by item.

Field adaptations, each forced by the local file's format and applied to both protocols' rows:
- BoolQ: the label "True"/"False" becomes 1/0 (lm-eval's choices are ["no", "yes"]).
- HellaSwag: the llama.cpp file has `ctx` but no `ctx_a`/`ctx_b`; lm-eval builds
  `ctx_a + " " + ctx_b.capitalize()`, so ctx_a = ctx and ctx_b = "" (its preprocess strips the
  trailing space). The one difference from the hub rows: the first letter of ctx_b is not
  capitalised.
- MMLU: one lm-eval task per subject (`mmlu_<subject>`, 5-shot, the first five dev rows), and the
  accuracy over all items (lm-eval's group aggregate weights subjects by size, the same number).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UserError
from .choice import binomial_stderr

log = logging.getLogger(__name__)

TASK_NAMES = {"boolq": "boolq", "piqa": "piqa", "siqa": "social_iqa", "hellaswag": "hellaswag", "mmlu": "mmlu"}
INSTALL_HINT = "lm-eval is not installed: pip install 'paramact[lmeval]' (or pick a :loglik task)"


def available() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    from importlib.metadata import version as v

    return v("lm-eval")


# what computes lm-eval's log-likelihood requests: HFLM as released, or lmeval_model.SharedPrefixLM
SCORERS = {"hflm": "HFLM", "shared-prefix": "paramact's shared-prefix forward"}


def check_scorer(scorer: str) -> None:
    if scorer not in SCORERS:
        raise UserError(f"unknown lm-eval scorer {scorer!r} (scorers: {', '.join(SCORERS)})")


def protocol(task: str, shots: int, scorer: str = "hflm") -> str:
    kind = "zero-shot" if not shots else f"{shots}-shot"
    by = "" if scorer == "hflm" else f", requests scored by {SCORERS[scorer]}"
    return f"lm-eval {version()} {TASK_NAMES[task]} ({kind}, loglik acc{by})"


def lmeval_row(task: str, row: dict) -> dict:
    """A paramact row in the fields and types lm-eval's task config reads."""
    r = dict(row)
    if task == "boolq":
        r["label"] = {"false": 0, "true": 1, "0": 0, "1": 1}[str(r["label"]).strip().lower()]
    elif task == "piqa":
        r["label"] = int(r["label"])
    elif task == "siqa":
        r["label"] = str(int(r["label"]))
    elif task == "hellaswag":
        if r.get("ctx_a") is None or r.get("ctx_b") is None:
            r["ctx_a"], r["ctx_b"] = r["ctx"], ""
        r["endings"] = list(r["endings"])
        r["label"] = str(int(r["label"]))
    elif task == "mmlu":
        r["choices"] = list(r["choices"])
        r["answer"] = int(r["answer"])
    return r


@dataclass(frozen=True)
class HarnessTask:
    """One paramact task as lm-eval task configs: per lm-eval task, its eval rows, its few-shot
    rows, and each eval row's position in the draw."""

    name: str
    shots: int
    parts: tuple[tuple[str, tuple[dict, ...], tuple[dict, ...], tuple[int, ...]], ...]

    @property
    def size(self) -> int:
        return sum(len(p[1]) for p in self.parts)


def harness_task(task: str, rows: Sequence[dict], demo_rows: Sequence[dict] = (), shots: int = 0) -> HarnessTask:
    """rows: the eval items (paramact's row dicts, in draw order); demo_rows: MMLU's dev split."""
    if task not in TASK_NAMES:
        raise UserError(f"no lm-eval task for {task!r} (tasks: {', '.join(TASK_NAMES)})")
    conv = [lmeval_row(task, r) for r in rows]
    if task != "mmlu":
        return HarnessTask(task, 0, ((TASK_NAMES[task], tuple(conv), (), tuple(range(len(conv)))),))
    subjects = list(dict.fromkeys(r["subject"] for r in conv))
    demos = [lmeval_row(task, r) for r in demo_rows]
    parts = []
    for s in subjects:
        where = tuple(i for i, r in enumerate(conv) if r["subject"] == s)
        dev = tuple(r for r in demos if r["subject"] == s)
        if len(dev) < shots:
            raise UserError(f"MMLU {s}: {len(dev)} demonstration rows, fewer than {shots} shots")
        parts.append((f"mmlu_{s}", tuple(conv[i] for i in where), dev, where))
    return HarnessTask(task, shots, tuple(parts))


@functools.cache
def _task_manager():
    """lm-eval's index of its ~15k task configs: built once per process (it takes seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _tasks(ht: HarnessTask) -> list:
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    index = _task_manager().task_index
    out = []
    for name, rows, dev, _ in ht.parts:
        if name not in index or index[name].yaml_path is None:
            raise UserError(f"lm-eval {version()} has no task {name!r}")
        cfg = load_yaml(index[name].yaml_path, resolve_func=True)
        cfg.pop("tag", None)
        split = cfg.get("test_split") or cfg.get("validation_split")

        def custom(rows=rows, dev=dev, split=split, **_):
            parts = {split: datasets.Dataset.from_list(list(rows))}
            if dev:
                parts["dev"] = datasets.Dataset.from_list(list(dev))
            return datasets.DatasetDict(parts)

        cfg.update(custom_dataset=custom, training_split=None, num_fewshot=ht.shots)
        if ht.shots:
            cfg["fewshot_split"] = "dev"
        out.append(ConfigurableTask(config=cfg))
    return out


@contextlib.contextmanager
def _hushed(progress: bool):
    """lm-eval's per-task notices (a custom dataset, a model object passed in) logged at ERROR and
    above only, and the datasets library's progress bars off unless progress is shown; restored after."""
    import datasets

    lg = logging.getLogger("lm_eval")
    level, bars = lg.level, datasets.is_progress_bar_enabled()
    lg.setLevel(logging.ERROR)
    if not progress:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        lg.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def harness_accuracy(
    model,
    tokenizer,
    ht: HarnessTask,
    batch_size: int = 8,
    max_length: int | None = None,
    progress: bool = False,
    scorer: str = "hflm",
) -> dict:
    """lm-eval's acc (and acc_norm where the task defines it) over every item of `ht`, with the
    per-choice log-likelihoods lm-eval computed (`scores`, in item order). scorer: one of SCORERS."""
    if not available():
        raise UserError(INSTALL_HINT)
    check_scorer(scorer)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from .lmeval_model import SharedPrefixLM

    with _hushed(progress):
        kwargs = {"max_length": max_length} if max_length else {}
        lm = (HFLM if scorer == "hflm" else SharedPrefixLM)(
            pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **kwargs
        )
        res = lm_eval.simple_evaluate(
            model=lm,
            tasks=_tasks(ht),
            task_manager=_task_manager(),
            bootstrap_iters=0,
            log_samples=True,
            random_seed=None,
            numpy_random_seed=None,
            torch_random_seed=None,
            fewshot_random_seed=None,
        )
    totals: dict[str, float] = {}
    scores: list[list[float]] = [[] for _ in range(ht.size)]
    hits = [0] * ht.size
    n = 0
    for name, rows, _, where in ht.parts:
        got = res["results"][name]
        k = int(got.get("sample_len", len(rows)))
        if k != len(rows):
            raise RuntimeError(f"lm-eval scored {k} of {len(rows)} {name} items")
        for metric in ("acc", "acc_norm"):
            if f"{metric},none" in got:
                totals[metric] = totals.get(metric, 0.0) + got[f"{metric},none"] * k
        samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        for pos, s in zip(where, samples, strict=True):
            scores[pos] = [float(r[0][0]) for r in s["resps"]]
            hits[pos] = int(s["acc"])
        n += k
    out = {m: v / n for m, v in totals.items()}
    out.update(
        n=n,
        stderr=binomial_stderr(out["acc"], n),
        protocol=protocol(ht.name, ht.shots, scorer),
        scores=scores,
        correct_items=hits,
    )
    return out
