"""`paramact report DIR`: render DIR/report.html (and a picture of its first screen)."""

from __future__ import annotations

from pathlib import Path

from .command import Command


def render(run_dir: Path, screenshot: bool = False) -> int:
    from ..report import render_report
    from ..report.screenshot import first_screen

    page = render_report(run_dir)
    print(f"report: {page}")
    if screenshot:
        shot = first_screen(page)
        if shot is not None:
            print(f"first screen: {shot}")
    return 0


def _arguments(p) -> None:
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--no-screenshot",
        dest="screenshot",
        action="store_false",
        help="skip report_first_screen.png, a headless-Chromium picture of the page's first screen",
    )


COMMAND = Command(
    "report",
    "render DIR/report.html (figures, tables, config, the paper's numbers)",
    lambda _c, _x, args: render(args.dir, screenshot=args.screenshot),
    extra=_arguments,
    needs_out=False,
)
