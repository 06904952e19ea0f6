"""Command-line options shared by every command that loads a model (one definition, one help text)."""

from __future__ import annotations

import argparse


def floats(s: str) -> tuple[float, ...]:
    """argparse type: '2e-6,5e-6' -> (2e-06, 5e-06)."""
    try:
        return tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --data-dir, --dtype, --device, --trust-remote-code."""
    from .models import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registry name, local path, .gguf file or hub id (default {DEFAULT_MODEL})")
    p.add_argument("--data-dir", default=None, help="folder with the datasets' official files (default $PARAMACT_DATA_DIR)")
    p.add_argument("--dtype", default=None, help="model dtype: float32 (default), bfloat16, float16")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: where the model loads)")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with a hub model (off by default)")


def add_coverage_option(p: argparse.ArgumentParser) -> None:
    """--allow-uncovered (the analysis commands; pruning always needs every weight)."""
    p.add_argument("--allow-uncovered", action="store_true",
                   help="run without the block parameters paramact cannot attribute (default: refuse the model "
                        "with one line naming the first); results.json records the coverage")


def add_config_option(p: argparse.ArgumentParser) -> None:
    from pathlib import Path

    p.add_argument("--config", type=Path, default=None,
                   help="YAML or JSON file of options (keys = long option names); command-line options win")


def add_device_map_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device-map", default=None, choices=["auto"],
                   help="spread a model that does not fit one device over all devices (accelerate); every "
                        "weight must stay on an accelerator (no CPU/disk offload)")


def non_negative_int(s: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def add_resume_options(p: argparse.ArgumentParser, unit: str = "batches") -> None:
    p.add_argument("--checkpoint-every", type=non_negative_int, default=20, help=f"{unit} between checkpoints (0: none)")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out from its last checkpoint")


def add_stats_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stats-device", default=None,
                   help="where the mean map (4 bytes per weight) lives, e.g. cpu to spare accelerator memory "
                        "(default: beside each weight)")
