"""`paramact data list` and `paramact data show`: the datasets, their sources and rendered prompts.

paramact data [--data-dir DIR] list
paramact data [--data-dir DIR] show NAME [--split S] [--samples K] [--data-seed X] [--shots K]
                                        [--form prompt|eval] [--path FILE_OR_DIR]
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.analysis import analysis_prompts
from ..data.choice_items import mc_items
from ..data.loading import source_status
from ..data.pairs import parallel_pairs, sts_pairs
from ..data.registry import REGISTRY, get_spec
from ..errors import UserError
from ..fields import DATA_DIR_HELP, DATA_SEED_HELP, option
from .command import Command
from .environment import env_data_dir
from .options import Options


@dataclass(frozen=True)
class DataOptions:
    data_dir: str | None = option(None, DATA_DIR_HELP)


@dataclass(frozen=True)
class ShowOptions:
    split: str | None = option(None, "split (default: the one the paper uses)")
    samples: int = option(3, "items to show", aliases=("n",))
    data_seed: int = option(1, DATA_SEED_HELP)
    shots: int | None = option(None, "demonstrations (GSM8K 0-8, MMLU 0-5)")
    form: str = option(
        "prompt",
        "prompt: analysis prompts; eval: multiple-choice items in both scoring forms",
        choices=("prompt", "eval"),
    )
    path: str | None = option(None, "read this file or folder instead of the data directory")


DATA, SHOW = Options(DataOptions), Options(ShowOptions)


def _arguments(d) -> None:
    DATA.add_to(d)
    sub = d.add_subparsers(dest="data_command", required=True)
    sub.add_parser("list", help="every dataset: where it would be read from and rows per split")
    s = sub.add_parser("show", help="print rendered prompts of a dataset")
    s.add_argument("name", help=f"one of: {', '.join(REGISTRY)}")
    SHOW.add_to(s)


def _list(data_dir) -> list[str]:

    out = [f"{'name':<11} {'kind':<16} {'source':<24} rows per split / location"]
    for name, spec in REGISTRY.items():
        try:
            st = source_status(name, data_dir)
        except UserError as e:
            out.append(f"{name:<11} {spec.kind:<16} {'error':<24} {e}")
            continue
        rows = " ".join(f"{s}={n}" for s, n in st["rows"].items()) or "-"
        out.append(f"{name:<11} {spec.kind:<16} {st['source']:<24} {rows}  [{st['location']}]")
    return out


def _header(title: str) -> str:
    return f"=== {title} ==="


def _show(name: str, o: ShowOptions, data_dir) -> list[str]:
    spec = get_spec(name)
    common = {"split": o.split, "data_dir": data_dir, "path": o.path}
    if o.form == "eval":
        items, _ = mc_items(name, o.samples, o.data_seed, shots=o.shots, **common)
        out = []
        for k, it in enumerate(items, 1):
            out += [
                _header(f"{it.dataset} {it.split} row {it.index} ({k}/{len(items)}) gold={it.gold_letter}"),
                "--- letter scoring: prompt (answer tokens " + " / ".join(it.letters) + ")",
                it.prompt,
                "--- log-likelihood: context",
                it.context,
            ]
            out += [f"  [{'x' if c == it.gold else ' '}] {cont!r}" for c, cont in enumerate(it.continuations)]
        return out
    if spec.kind == "pairs":
        pairs, _ = sts_pairs(name, o.samples, o.data_seed, **common)
        return [
            line
            for k, p in enumerate(pairs, 1)
            for line in (_header(f"{name} row {p.index} ({k}/{len(pairs)}) score={p.score:g}"), p.a, p.b)
        ]
    if spec.kind == "parallel":
        pairs, _ = parallel_pairs(name, o.samples, o.data_seed, **common)
        return [
            line
            for k, p in enumerate(pairs, 1)
            for line in (_header(f"{name} talk {p.talk} seg {p.seg} ({k}/{len(pairs)})"), p.zh, p.en)
        ]

    texts, source = analysis_prompts(name, o.samples, o.data_seed, shots=o.shots, **common)
    rows = source.get("indices") or [None] * len(texts)
    out = []
    for k, (text, row) in enumerate(zip(texts, rows, strict=True), 1):
        what = f"row {row}" if row is not None else f"window of {source.get('window_unit', 'tokens')}"
        out += [_header(f"{name} {source['split']} {what} ({k}/{len(texts)})"), text]
    return out


def run(_config, _ctx, args) -> int:
    """Execute `data list` / `data show`; UserError for bad input (one line, exit 2)."""
    data_dir = env_data_dir(DATA.build(DATA.values(args)).data_dir)
    if args.data_command == "list":
        lines = _list(data_dir)
    elif args.data_command == "show":
        lines = _show(args.name, SHOW.build(SHOW.values(args)), data_dir)
    else:
        raise UserError(f"unknown data command {args.data_command!r}")
    print("\n".join(lines))
    return 0


COMMAND = Command("data", "datasets: registry, sources, rendered prompts", run, extra=_arguments, needs_out=False)
