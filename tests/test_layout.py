"""The shape of the code: layers, names, one vocabulary on the command line, lint gates."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "paramact"
BIN = Path(sys.executable).parent

# flags that several commands share: each must be one field with one help text everywhere
# (--data: the data a command analyses; sts takes one of its three pair datasets, so its help differs)
COMMON = (
    "model",
    "dtype",
    "device-map",
    "trust-remote-code",
    "data-dir",
    "data-seed",
    "target",
    "max-length",
    "sketch-dim",
    "sketch-seed",
    "gammas",
    "stats-device",
    "sort-by-length",
    "allow-uncovered",
    "out",
    "resume",
    "checkpoint-every",
    "device",
    "threads",
    "calibration",
    "calibration-samples",
    "calibration-seqlen",
    "schedule",
    "sparsity",
    "density",
    "ppl-windows",
    "items",
    "eval-max-length",
)


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def test_no_environment_reads_below_the_shell():
    """Only paramact.cli reads the process environment; the library gets values."""
    found = []
    for path in _modules():
        if path.is_relative_to(PKG / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_module_names_are_unique():
    names = defaultdict(list)
    for path in _modules():
        if path.name not in ("__init__.py", "__main__.py"):
            names[path.stem].append(str(path.relative_to(PKG)))
    assert {k: v for k, v in names.items() if len(v) > 1} == {}


def test_no_citation_of_files_outside_the_repository():
    hits = [str(p.relative_to(ROOT)) for p in _modules() if "PAPER.md" in p.read_text(encoding="utf-8")]
    assert hits == []


def _options():
    """command -> {flag: (help, default)} from the parser the CLI builds."""
    from paramact.cli import COMMANDS

    table = {}
    for name, cmd in COMMANDS.items():
        if cmd.options is None:
            continue
        opts = {**cmd.options.opts, **cmd.run_opts.opts}
        table[" ".join((name, *cmd.path))] = {f: (o.help, o.default) for f, o in opts.items()}
    from paramact.cli.data_cmd import DATA, SHOW

    table["data show"] = {f: (o.help, o.default) for f, o in {**DATA.opts, **SHOW.opts}.items()}
    return table


def test_every_option_has_help_and_one_meaning():
    table = _options()
    assert {"activations", "findings", "sts", "prune", "schedule", "eval", "study prune"} <= set(table)
    for cmd, opts in table.items():
        for flag, (help_text, _) in opts.items():
            assert help_text.strip(), f"{cmd} --{flag} has no help"
    for flag in COMMON:
        helps = {cmd: opts[flag][0] for cmd, opts in table.items() if flag in opts}
        assert helps, f"--{flag} is in no command"
        assert len(set(helps.values())) == 1, (flag, helps)
    assert table["activations"]["data"][0] == table["findings"]["data"][0]


def test_defaults_come_from_the_config_dataclasses(monkeypatch):
    """A parsed command with no options builds exactly the dataclass defaults (one place per default).
    The environment variables that fill in defaults are cleared: the test holds wherever it runs."""
    for var in ("PARAMACT_CACHE", "PARAMACT_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    from paramact.cli import COMMANDS, parser
    from paramact.experiments.findings import FindingsRun
    from paramact.prune.config import DEFAULT_SPARSITY, PruneRun

    args = parser().parse_args(["findings", "--out", "x"])
    call = COMMANDS["findings"].prepare(args)
    assert call.config == FindingsRun()
    args = parser().parse_args(["prune", "--out", "x"])
    cfg = COMMANDS["prune"].prepare(args).config
    assert cfg == PruneRun() and cfg.prune.target == DEFAULT_SPARSITY


def test_config_file_and_command_line_map_onto_the_same_fields(tmp_path):
    from paramact.cli import COMMANDS, parser
    from paramact.errors import UserError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: [pydoc, pycode]\nsamples: 5\nsketch-seed: 3\nsort_by_length: false\nout: r\n")
    args = parser().parse_args(["findings", "--config", str(cfg), "--samples", "7"])
    call = COMMANDS["findings"].prepare(args)
    assert call.config.data == ("pydoc", "pycode") and call.config.samples == 7  # the command line wins
    assert call.config.activation.sketch_seed == 3 and call.config.activation.sort_by_length is False
    assert str(call.out) == "r"
    cfg.write_text("samples: many\n")
    with pytest.raises(UserError, match=r"config key 'samples'.*expected an integer"):
        COMMANDS["findings"].prepare(parser().parse_args(["findings", "--config", str(cfg)]))
    cfg.write_text("seed: 1\n")
    with pytest.raises(UserError, match="unknown config key 'seed'"):
        COMMANDS["findings"].prepare(parser().parse_args(["findings", "--config", str(cfg)]))


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
        return found
    return str(path)


@pytest.mark.parametrize("argv", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(argv):
    r = subprocess.run([_tool("ruff"), *argv], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_import_contracts():
    """The layers (shell -> experiments | prune -> distributed -> api -> engine | reducers -> base)
    and no import cycles (pyproject.toml [tool.importlinter])."""
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_the_shell_reads_the_environment_once(monkeypatch, tmp_path):
    """$PARAMACT_DATA_DIR fills every data_dir the user left empty (nested configs too); --data-dir
    and a config file's data_dir win over it. The library itself ignores the variable."""
    from paramact.cli import COMMANDS, parser
    from paramact.data.loading import resolve_data_dir

    monkeypatch.setenv("PARAMACT_DATA_DIR", str(tmp_path))
    cfg = COMMANDS["prune"].prepare(parser().parse_args(["prune", "--out", "x"])).config
    assert cfg.prune.calibration.data_dir == cfg.eval.data_dir == str(tmp_path)
    given = COMMANDS["findings"].prepare(parser().parse_args(["findings", "--out", "x", "--data-dir", "/d"])).config
    assert given.data_dir == "/d"
    assert resolve_data_dir(None) is None
