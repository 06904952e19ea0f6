"""Command-line options and config files, both derived from the typed config dataclasses.

Each field declared with fields.option() becomes one `--flag` whose help text, default and
choices come from the field; nested config dataclasses contribute their fields under their own
flags. Values from a config file (YAML via safe_load, or JSON; keys are the flags) and from the
command line go through the same conversion and end in the same dataclass constructors, whose
checks then run: the command line wins over the file, the file over the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError


@dataclass
class Opt:
    flag: str  # without dashes
    paths: list[tuple[str, ...]]  # field paths it sets (one flag may feed equal fields of nested configs)
    kind: Any  # the field's type
    default: Any
    help: str
    aliases: tuple[str, ...]
    choices: Any
    parse: Callable[[str], Any] | None

    @property
    def dest(self) -> str:
        return self.flag.replace("-", "_")

    def convert(self, value: Any, where: str) -> Any:
        """A command-line string, or a config file's value, into the field's value."""
        try:
            out = _convert(self.kind, value, self.parse)
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: {e}") from None
        choices = self.choices() if callable(self.choices) else self.choices
        if choices is not None and out is not None:
            for v in out if isinstance(out, tuple) else (out,):
                if v not in choices:
                    raise UserError(f"{where}: {v!r} is not one of {', '.join(map(str, choices))}")
        return out


def _strip_optional(kind):
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return kind, False


def _convert(kind, value, parse):
    base, optional = _strip_optional(kind)
    if value is None:
        if optional:
            return None
        raise ValueError("a value is required")
    if parse is not None:
        return parse(str(value))
    if typing.get_origin(base) is tuple:
        (item, *_rest) = typing.get_args(base)
        parts = value if isinstance(value, (list, tuple)) else [value]
        flat = [
            p.strip() if isinstance(p, str) else p for v in parts for p in (v.split(",") if isinstance(v, str) else [v])
        ]
        return tuple(_convert(item, p, None) for p in flat if p != "")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise TypeError(f"expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if base is float:
        if isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, (dict, list, bool)):
        raise TypeError(f"expected a string, got {value!r}")
    return str(value)


class Options:
    """The options one command derives from its config dataclass (and the shell's RunOptions)."""

    def __init__(self, cls, only: dict[str, tuple[str, ...]] | None = None, skip: tuple[str, ...] = ()):
        self.cls, self.only, self.skip = cls, only or {}, set(skip)
        self.opts: dict[str, Opt] = {}
        self._walk(cls, cls(), ())

    def _walk(self, cls, default, path) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            p = (*path, f.name)
            meta = f.metadata
            value = getattr(default, f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                if f.name not in self.skip:
                    self._walk(hints[f.name], value, p)
                continue
            if not meta.get("cli", False) or ".".join(p) in self.skip or f.name in self.skip:
                continue
            if path and path[-1] in self.only and f.name not in self.only[path[-1]]:
                continue
            flag = meta.get("flag") or f.name.replace("_", "-")
            if flag in self.opts:  # the same fact in two nested configs (e.g. --data-dir): one flag sets both
                self.opts[flag].paths.append(p)
                continue
            self.opts[flag] = Opt(
                flag,
                [p],
                hints[f.name],
                value,
                meta.get("help", ""),
                meta.get("aliases", ()),
                meta.get("choices"),
                meta.get("parse"),
            )

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        for o in self.opts.values():
            names = [f"--{o.flag}", *(f"--{a}" for a in o.aliases)]
            default = o.default if not isinstance(o.default, tuple) else ",".join(map(str, o.default)) or "none"
            help_text = f"{o.help} (default: {default})" if o.default not in (None, False, ()) else o.help
            base, _ = _strip_optional(o.kind)
            if base is bool:
                parser.add_argument(
                    f"--{o.flag}",
                    dest=o.dest,
                    action=argparse.BooleanOptionalAction,
                    default=argparse.SUPPRESS,
                    help=help_text,
                )
            elif typing.get_origin(base) is tuple:
                parser.add_argument(
                    *names, dest=o.dest, action="append", default=argparse.SUPPRESS, help=help_text, metavar="A,B"
                )
            else:
                choices = o.choices() if callable(o.choices) else o.choices
                metavar = "{" + ",".join(map(str, choices)) + "}" if choices else None
                parser.add_argument(*names, dest=o.dest, default=argparse.SUPPRESS, help=help_text, metavar=metavar)

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """The options given on the command line, converted: dest -> value."""
        given = vars(args)
        return {o.dest: o.convert(given[o.dest], f"--{o.flag}") for o in self.opts.values() if o.dest in given}

    def from_file(self, raw: dict, path: Path) -> dict[str, Any]:
        """A config file's mapping (keys: flags, with '-' or '_', or their aliases), converted."""
        by_name = {n.replace("-", "_"): o for o in self.opts.values() for n in (o.flag, *o.aliases)}
        out = {}
        for key, value in raw.items():
            o = by_name.get(str(key).replace("-", "_"))
            if o is None:
                known = ", ".join(sorted(o.flag for o in self.opts.values()))
                raise UserError(f"unknown config key {key!r} in {path} (known: {known})")
            out[o.dest] = o.convert(value, f"config key {key!r} in {path}")
        return out

    def build(self, values: dict[str, Any]):
        """The config dataclass with `values` (dest -> value) over its defaults; its checks run."""
        by_path = {p: o for o in self.opts.values() for p in o.paths}

        def make(cls, default, path):
            hints = typing.get_type_hints(cls)
            kw = {}
            for f in dataclasses.fields(cls):
                p = (*path, f.name)
                if dataclasses.is_dataclass(hints[f.name]):
                    sub = getattr(default, f.name)
                    kw[f.name] = make(hints[f.name], sub, p)
                elif p in by_path and by_path[p].dest in values:
                    kw[f.name] = values[by_path[p].dest]
            return dataclasses.replace(default, **kw)

        return make(self.cls, self.cls(), ())


def read_config_file(path: Path) -> dict:
    """A config file's mapping: YAML (safe_load) or JSON."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
        cfg = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config file {path}: {e.__class__.__name__}") from e
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"config file {path} is not valid {'JSON' if str(path).endswith('.json') else 'YAML'}") from e
    if not isinstance(cfg, dict):
        raise UserError(f"config file {path} must hold a mapping of option names to values")
    return cfg
