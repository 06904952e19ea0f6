"""The shell: `paramact COMMAND ...` parses options into typed configs, builds the run context,
calls the library and reports. One module per command, dispatched through COMMANDS.

Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import UserError
from ..memory import keep_freed_memory
from . import (
    activations_cmd,
    data_cmd,
    eval_cmd,
    findings_cmd,
    models_cmd,
    prune_cmd,
    report_cmd,
    schedule_cmd,
    sts_cmd,
    study_cmd,
)
from .command import Command
from .environment import keep_memory_setting

log = logging.getLogger("paramact")

# name -> command; the order is the order of `paramact --help`
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        models_cmd.COMMAND,
        data_cmd.COMMAND,
        activations_cmd.COMMAND,
        findings_cmd.COMMAND,
        sts_cmd.COMMAND,
        report_cmd.COMMAND,
        prune_cmd.COMMAND,
        schedule_cmd.COMMAND,
        eval_cmd.COMMAND,
        study_cmd.COMMAND,
    )
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="paramact", description="Which parameters of a language model does an input activate?")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for c in COMMANDS.values():
        c.add_parser(sub)
    return p


def _silence_bars() -> None:
    """Every tqdm bar of this process off, those a library turns on explicitly included (lm-eval
    passes disable=False). TQDM_DISABLE is read when tqdm is imported, before --quiet is parsed."""
    from tqdm import std

    init = std.tqdm.__init__
    if getattr(init, "quiet", False):
        return

    def quiet(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    quiet.quiet = True  # type: ignore[attr-defined]
    std.tqdm.__init__ = quiet


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")  # the bars of child processes
        _silence_bars()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    if keep_memory_setting():
        keep_freed_memory()
    command = COMMANDS[args.command]
    out = None
    try:
        call = command.prepare(args)  # options and config file checked; nothing loaded yet
        out = call.out
        if call.finished:
            # a requeued job: the run it asks to continue is complete; nothing is loaded or rewritten
            print(f"paramact: {out} holds a finished run (results.json); nothing to resume", file=sys.stderr)
            return 0
        return _run_keeping_no_empty_dir(call, out)
    except UserError as e:
        print(f"paramact: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("paramact: interrupted", file=sys.stderr)
        return 130


def _run_keeping_no_empty_dir(call, out: Path | None) -> int:
    """Run the command; a run directory it created, and left empty because it failed, goes again."""
    fresh = out is not None and not out.exists()
    try:
        return call()
    except BaseException:
        if fresh and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
