"""One shape for every command: a config dataclass, the run options it takes, and a function.

Command.prepare turns parsed arguments (and --config FILE) into the command's typed config and
its RunOptions, checking everything cheap before any model is loaded; calling the result builds
the RunContext (torchrun rank, device, threads) and runs the command's function.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .environment import RunOptions, make_context, with_environment
from .options import Options, read_config_file

RUN_OPTIONS = ("out", "resume", "checkpoint_every", "device", "threads")


@dataclass
class Command:
    name: str
    help: str
    run: Callable  # (config, ctx, args) -> exit code
    config: type | None = None  # the config dataclass its options come from
    only: dict[str, tuple[str, ...]] = field(default_factory=dict)  # nested config -> the fields it exposes
    skip: tuple[str, ...] = ()
    run_options: tuple[str, ...] = RUN_OPTIONS  # the RunOptions fields it takes
    needs_out: bool = True
    distributed: bool = True  # may run under torchrun
    extra: Callable[[argparse.ArgumentParser], None] | None = None  # positional arguments and sub-commands
    path: tuple[str, ...] = ()  # sub-command names (study prune)

    def __post_init__(self) -> None:
        self.options = Options(self.config, self.only, self.skip) if self.config is not None else None
        skip = tuple(f for f in RUN_OPTIONS if f not in self.run_options)
        self.run_opts = Options(RunOptions, skip=skip)

    def add_parser(self, sub) -> None:
        p = sub.add_parser(self.name, help=self.help, description=self.help)
        for name in self.path:  # e.g. `study prune`
            inner = p.add_subparsers(dest=f"{self.name}_command", required=True)
            p = inner.add_parser(name, help=self.help, description=self.help)
        if self.extra is not None:
            self.extra(p)
        if self.options is not None:
            self.options.add_to(p)
            self.run_opts.add_to(p)
            p.add_argument(
                "--config",
                type=Path,
                default=None,
                help="YAML or JSON file of options (keys: the long option names); command-line options win",
            )

    def prepare(self, args: argparse.Namespace) -> Call:
        if self.options is None:
            return Call(self, None, None, args)
        given = self.options.values(args)
        run_given = self.run_opts.values(args)
        if getattr(args, "config", None) is not None:
            raw = read_config_file(args.config)
            run_keys = {o.dest for o in self.run_opts.opts.values()}
            mine = {k: v for k, v in raw.items() if _dest(k) not in run_keys}
            runs = {k: v for k, v in raw.items() if k not in mine}
            given = {**self.options.from_file(mine, args.config), **given}
            run_given = {**self.run_opts.from_file(runs, args.config), **run_given}
        config = with_environment(self.options.build(given))
        run = self.run_opts.build(run_given)
        label = " ".join((self.name, *self.path))
        if self.needs_out and run.out is None:
            raise UserError(f"{label} needs --out (on the command line or in --config)")
        return Call(self, config, run, args)


def _dest(key: Any) -> str:
    return str(key).replace("-", "_")


@dataclass
class Call:
    command: Command
    config: Any
    run_options: RunOptions | None
    args: argparse.Namespace

    @property
    def out(self) -> Path | None:
        return Path(self.run_options.out) if self.run_options is not None and self.run_options.out else None

    @property
    def finished(self) -> bool:
        """--resume on a run that already wrote its results.json."""
        return bool(
            self.run_options
            and self.run_options.resume
            and self.out is not None
            and (self.out / "results.json").is_file()
        )

    def __call__(self) -> int:
        if self.config is None:
            return self.command.run(None, None, self.args)
        device_map = getattr(getattr(self.config, "model", None), "device_map", None)
        ctx = make_context(
            self.run_options,
            progress=not self.args.quiet,
            device_map=device_map,
            distributed_ok=self.command.distributed,
            command=" ".join((self.command.name, *self.command.path)),
        )
        return self.command.run(self.config, ctx, self.args)
