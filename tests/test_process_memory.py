"""paramact.keep_freed_memory (called by the shell unless $PARAMACT_KEEP_MEMORY=0) keeps the
memory a pass frees mapped (glibc mallopt): the next batch's allocations touch no fresh pages.
Measured in a subprocess by its minor page faults."""

import subprocess
import sys
from pathlib import Path

import pytest

_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# with transparent huge pages always on, one fault maps 2 MiB and the counts below do not apply
HUGE_PAGES_ALWAYS = _THP.exists() and "[always]" in _THP.read_text()

SCRIPT = """
import resource, sys
import torch
from paramact import keep_freed_memory
from paramact.cli.environment import keep_memory_setting
applied = keep_memory_setting() and keep_freed_memory()  # what the shell does at start

def batch():  # a pass in miniature: 24 MiB tensors allocated, filled and freed
    ts = [torch.ones(6 << 20) for _ in range(16)]
    del ts

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    batch()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env_value: str) -> tuple[bool, int]:
    env = {"PARAMACT_KEEP_MEMORY": env_value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.skipif(HUGE_PAGES_ALWAYS, reason="transparent huge pages always on: 2 MiB faults")
def test_freed_memory_is_reused_without_page_faults():
    applied, kept = _faults("1")
    off, default = _faults("0")
    assert applied and not off
    # 3 batches x 384 MiB: glibc's defaults map much of it afresh (measured 104k-295k faults of
    # 4 KiB), kept memory is reused (measured 6k faults)
    assert default > 50_000, default
    assert kept * 5 < default, (kept, default)
