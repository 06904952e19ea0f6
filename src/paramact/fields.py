"""Config fields that carry their own command-line facts.

Every typed config (ActivationConfig, the run configs of the experiments, the pruning and
evaluation configs) declares each field once with `option(default, help)`: the default, the
`--help` text and, where it differs from the field name, the flag. The shell (paramact.cli)
derives its options and reads config files from these fields alone, so a default is written in
exactly one place and a flag means the same thing in every command that has it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_NO_DEFAULT: Any = dataclasses.MISSING


def option(
    default: Any = _NO_DEFAULT,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: Callable[[], Any] | tuple | None = None,
    parse: Callable[[str], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with command-line metadata.

    flag: the long option without dashes (default: the field name with '-' for '_');
    aliases: older flags still accepted (documented in the README); choices: allowed values, or a
    callable giving them (a registry, read when the parser is built); parse: str -> value for
    types the shell cannot infer; cli=False: a field that no command exposes.
    """
    meta = {"help": help, "flag": flag, "aliases": aliases, "choices": choices, "parse": parse, "cli": cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# help texts of facts that several configs hold (one text, so one meaning, in every command)
DATA_DIR_HELP = "folder with the datasets' official files (default $PARAMACT_DATA_DIR)"
DATA_SEED_HELP = "seed of the sample draw (the paper's analysis scripts use 1)"
