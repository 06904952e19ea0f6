"""A picture of the report's first screen (report_first_screen.png beside report.html), taken with
headless Chromium when one is installed, so that a change to a report can be seen at a glance."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1200, 900)


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def first_screen(page: Path, out: Path | None = None, timeout: int = 120) -> Path | None:
    """Screenshot the first WINDOW of `page` into `out` (default: report_first_screen.png beside it);
    None, with one logged line, when no browser is installed or it fails."""
    exe = find_browser()
    if exe is None:
        log.warning("no Chromium found (Debian package `chromium`): first-screen screenshot skipped")
        return None
    out = out or page.with_name("report_first_screen.png")
    tmp = out.with_name(f".{out.name}.tmp.png")
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={tmp}",
        page.resolve().as_uri(),
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("Chromium failed (%s): first-screen screenshot skipped", type(e).__name__)
        return None
    if r.returncode != 0 or not tmp.is_file():
        log.warning("Chromium failed (exit %s): first-screen screenshot skipped", r.returncode)
        tmp.unlink(missing_ok=True)
        return None
    tmp.replace(out)
    return out
