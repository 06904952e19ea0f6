"""Evaluation tasks as a registry; prepare once (data, tokens), run on any number of models.

Task names: c4, wikitext2, pydoc (perplexity: the registry's data.PERPLEXITY_CORPORA); boolq, siqa,
piqa, hellaswag, mmlu (the paper's letter scoring; MMLU 5-shot); boolq:loglik, ... (paramact's
lm-eval-style log-likelihood); boolq:lmeval, ... (lm-evaluation-harness itself, the optional extra);
humaneval (canonical-solution NLL). The three multiple-choice protocols score the same item draw. Each
result is
{metric: value, ..., "protocol": "..."}; perplexity is under the metric name `ppl`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..data import PERPLEXITY_CORPORA
from ..errors import UserError
from ..fields import DATA_DIR_HELP, option
from ..models import ModelConfig
from . import choice, harness, ppl

log = logging.getLogger(__name__)

MC = ("boolq", "siqa", "piqa", "hellaswag", "mmlu")
PAPER_TASKS = ("wikitext2", *MC)
TASKS: dict[str, str] = {
    **dict.fromkeys(PERPLEXITY_CORPORA, "perplexity"),
    **dict.fromkeys(MC, "letter"),
    **{f"{t}:loglik": "loglik" for t in MC},
    **{f"{t}:lmeval": "lmeval" for t in MC},
    "humaneval": "code",
}


def count_or_all(s: str) -> int | None:
    """A count >= 0 from the command line; 0 means 'no limit' (None)."""
    try:
        v = int(s)
    except ValueError:
        raise ValueError(f"expected an integer, got {s!r}") from None
    if v < 0:
        raise ValueError(f"expected an integer >= 0, got {v}")
    return v or None


@dataclass(frozen=True)
class EvalConfig:
    ppl_seqlen: int = option(256, "perplexity window (Wanda: the context)")
    ppl_windows: int | None = option(
        32, "perplexity windows per corpus (0: every window, as Wanda)", parse=count_or_all
    )
    items: int | None = option(256, "items per accuracy task (the paper: 256; 0: the whole split)", parse=count_or_all)
    humaneval_items: int | None = option(None, "HumanEval problems (default: all 164)", parse=count_or_all)
    seed: int = option(0, "seed of the item draw", flag="eval-seed")
    batch_size: int = option(8, "evaluation items per forward", flag="eval-batch-size")
    max_length: int | None = option(
        2048, "prompts keep their last N tokens (0: the context)", flag="eval-max-length", parse=count_or_all
    )
    mmlu_shots: int = option(5, "MMLU demonstrations")
    lmeval_scorer: str = option(
        "hflm",
        "how lm-eval's requests are computed (the :lmeval tasks): hflm (lm-eval's HFLM, as released) or "
        "shared-prefix (paramact's forward: a prompt prefix shared by several requests, such as MMLU's "
        "demonstrations, computed once; same log-likelihoods up to float rounding)",
        choices=lambda: list(harness.SCORERS),
    )
    mmlu_demo_split: str = option("dev", "split the MMLU demonstrations come from", cli=False)
    data_dir: str | None = option(None, DATA_DIR_HELP)

    def __post_init__(self) -> None:
        for k in ("ppl_seqlen", "batch_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"{k.replace('_', ' ')} must be a positive integer, got {v!r}")
        harness.check_scorer(self.lmeval_scorer)
        if self.ppl_seqlen < 2:
            raise UserError(f"perplexity seqlen must be >= 2, got {self.ppl_seqlen}")
        for k in ("ppl_windows", "items", "humaneval_items", "max_length"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise UserError(f"{k.replace('_', ' ')} must be a positive integer, got {v!r}")


def parse_tasks(spec: str | Sequence[str], *, installed: bool = True) -> list[str]:
    """The task names of `spec`, checked; `installed`: also that the scorers they need are installed
    (a config checks names only, so that its defaults never need an optional extra)."""
    names = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t and t.strip()]
    if not names:
        raise UserError("no evaluation tasks given")
    for t in names:
        if t not in TASKS:
            raise UserError(f"unknown evaluation task {t!r}; tasks: {', '.join(TASKS)}")
        if installed and TASKS[t] == "lmeval" and not harness.available():
            raise UserError(f"{t}: {harness.INSTALL_HINT}")
    return list(dict.fromkeys(names))


@dataclass
class Prepared:
    name: str
    run: Callable  # (model, progress) -> result dict
    source: dict = field(default_factory=dict)
    size: int = 0  # items or windows, for the progress bar


def _context_cap(cfg: EvalConfig, context: int | None) -> int | None:
    caps = [c for c in (cfg.max_length, context) if c]
    return min(caps) if caps else None


def prepare(
    tokenizer,
    names: Sequence[str],
    cfg: EvalConfig = EvalConfig(),
    *,
    context: int | None = None,
    exclude_c4: Sequence[str] = (),
    bos: int | None = None,
) -> list[Prepared]:
    """Load and tokenize every task once. exclude_c4: text snippets of calibration windows; bos: the
    BOS a model expects in front of every perplexity window (anatomy.window_bos)."""
    from ..data import load_split, mc_items

    if context is not None and cfg.ppl_seqlen > context:
        raise UserError(f"perplexity seqlen {cfg.ppl_seqlen} exceeds the model's context length {context}")
    cap = _context_cap(cfg, context)
    out = []
    for name in parse_tasks(names):
        kind = TASKS[name]
        if kind == "perplexity":
            need = None if cfg.ppl_windows is None else cfg.ppl_windows * cfg.ppl_seqlen
            stream = ppl.token_stream(name, tokenizer, need, cfg.data_dir, exclude_c4 if name == "c4" else ())
            run = (
                lambda s: (
                    lambda m, p=None: ppl.perplexity(
                        m, s.ids, cfg.ppl_seqlen, cfg.ppl_windows, max(1, cfg.batch_size // 2), p, bos
                    )
                )
            )(stream)
            n = len(ppl.cut_windows(stream.ids, cfg.ppl_seqlen, bos))
            out.append(Prepared(name, run, stream.source, n if cfg.ppl_windows is None else min(n, cfg.ppl_windows)))
        elif kind in ("letter", "loglik", "lmeval"):
            task = name.split(":")[0]
            shots = cfg.mmlu_shots if task == "mmlu" else None
            items, source = mc_items(
                task, cfg.items, cfg.seed, shots=shots, demo_split=cfg.mmlu_demo_split, data_dir=cfg.data_dir
            )
            source.pop("indices", None)
            if kind == "lmeval":
                ht = _harness_task(task, items, cfg)
                source.update(template=f"lm-eval {harness.TASK_NAMES[task]}", lm_eval=harness.version())
                run = (
                    lambda h: (
                        lambda m, p=None: _progressed(
                            harness.harness_accuracy(
                                m, tokenizer, h, cfg.batch_size, cap, _shown(p), cfg.lmeval_scorer
                            ),
                            p,
                            h.size,
                        )
                    )
                )(ht)
                out.append(Prepared(name, run, source, ht.size))
                continue
            fn = choice.letter_accuracy if kind == "letter" else choice.loglik_accuracy
            run = (lambda f, its: lambda m, p=None: f(m, tokenizer, its, cfg.batch_size, cap, p))(fn, items)
            size = len(items) if kind == "letter" else sum(len(i.continuations) for i in items)
            out.append(Prepared(name, run, source, size))
        else:
            data = load_split("humaneval", "test", data_dir=cfg.data_dir)
            rows = list(data.rows[: cfg.humaneval_items] if cfg.humaneval_items else data.rows)
            run = (lambda rs: lambda m, p=None: choice.code_nll(m, tokenizer, rs, max(1, cfg.batch_size // 2), cap, p))(
                rows
            )
            out.append(Prepared(name, run, dict(data.source), len(rows)))
    return out


def _harness_task(task: str, items, cfg: EvalConfig) -> harness.HarnessTask:
    """The same rows paramact's scorers drew, for lm-eval."""
    from ..data import load_split

    data = load_split(task, items[0].split, data_dir=cfg.data_dir)
    rows = [data.rows[it.index] for it in items]
    demos = load_split("mmlu", cfg.mmlu_demo_split, data_dir=cfg.data_dir).rows if task == "mmlu" else ()
    return harness.harness_task(task, rows, demos, cfg.mmlu_shots if task == "mmlu" else 0)


def _shown(progress) -> bool:
    """Whether a progress bar is being shown (a disabled tqdm bar is still an object)."""
    return progress is not None and not getattr(progress, "disable", False)


def _progressed(result: dict, progress, n: int) -> dict:
    if progress is not None:
        progress.update(n)
    return result


def evaluate(model, prepared: Sequence[Prepared], progress: bool = False) -> dict[str, dict]:
    """Run prepared tasks on a model: {task: {metric: value, ..., protocol, source}}."""
    results = {}
    for task in prepared:
        with tqdm(total=task.size, desc=f"eval {task.name}", disable=not progress, leave=False) as bar:
            res = task.run(model, bar)
        res.pop("predictions", None)
        res.pop("scores", None)
        for k, v in res.items():
            if isinstance(v, float) and not math.isfinite(v):
                log.warning("%s: %s is %s", task.name, k, v)
        results[task.name] = {**res, "source": task.source}
    return results


@dataclass(frozen=True)
class EvalRun:
    """`paramact eval`: a model evaluated on tasks."""

    tasks: tuple[str, ...] = option((), "tasks, comma-separated (required): " + ", ".join(TASKS))
    model: ModelConfig = option(factory=ModelConfig)
    eval: EvalConfig = option(factory=EvalConfig)
