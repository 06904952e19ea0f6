"""Shared pieces of the findings / sts / report tests: an in-process CLI over the experiment
subcommands, a synthetic STS-B data directory, and a headless Chromium finder."""

from __future__ import annotations

import os
import shutil

import pytest

from paramact.cli import main

STS_ROWS = [
    (5.0, "A man is playing a guitar.", "A man plays the guitar."),
    (0.2, "A woman is slicing bread.", "The stock market fell sharply today."),
    (3.8, "Two dogs run in a field.", "Two dogs are running through the grass."),
    (1.0, "A child reads a book.", "A cat sleeps on the sofa."),
    (4.4, "The sun rises in the east.", "In the east, the sun comes up."),
    (2.5, "He cooks pasta for dinner.", "He is making food in the kitchen."),
    (0.6, "A plane takes off.", "Someone is writing a letter."),
    (4.9, "The girl is singing.", "A girl sings."),
    (1.8, "A man rides a horse.", "A woman walks a dog."),
    (3.1, "People are dancing at a party.", "A group of people dance."),
]


def cli(*argv: str) -> int:
    """Run a paramact command in this process, quietly, as the command line does (bad input -> 2)."""
    return main(["--quiet", *argv])


def sts_data_dir(root):
    """DATA_DIR/stsb/sts-dev.csv in the official tab-separated layout, with STS_ROWS."""
    d = root / "stsb"
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"main-captions\tsynthetic\t2024\t{i:04d}\t{s:.3f}\t{a}\t{b}" for i, (s, a, b) in enumerate(STS_ROWS)]
    (d / "sts-dev.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def chromium() -> str:
    """Path of a headless-capable Chromium; skip outside CI, fail in CI (CI=true) when absent."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium not found (Debian package `chromium`)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; .ci/run must install it")
    pytest.skip(reason)
