"""Plots and the HTML report of a run directory; reads run directories only.

- plots.py  matplotlib (Agg) figures of findings, sts and crosslingual runs
- html.py   report.html: figures inlined, tables, config and environment, the paper's numbers beside ours
- paper.py  the paper's numbers (Wang et al. 2025), for side-by-side tables and figures
"""

from .html import render_report
from .plots import figures

__all__ = ["figures", "render_report"]
