"""Run-directory primitives: atomic files, the streamed tensor file."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from paramact.errors import UserError
from paramact.runs import TensorFileWriter, atomic_path, read_tensors, write_json


def test_streamed_tensor_file_round_trip_out_of_order(tmp_path):
    data = torch.randn(5, 3, 8).to(torch.float16)
    w = TensorFileWriter(tmp_path / "fp.safetensors", "fingerprints", (5, 3, 8), torch.float16, {"dim": 8})
    w.write([3, 4], data[3:])
    w.write([0, 1, 2], data[:3])
    assert not (tmp_path / "fp.safetensors").exists()  # nothing published before close
    w.close()
    assert torch.equal(load_file(str(tmp_path / "fp.safetensors"))["fingerprints"], data)
    with safe_open(str(tmp_path / "fp.safetensors"), "pt") as f:
        assert f.metadata() == {"dim": "8"}


def test_incomplete_stream_is_never_published_and_resumes(tmp_path):
    w = TensorFileWriter(tmp_path / "fp.safetensors", "x", (4, 2), torch.float32)
    w.write([0, 1], torch.ones(2, 2))
    w.close(complete=False)
    assert [p.name for p in tmp_path.iterdir()] == ["fp.safetensors.partial"]
    w = TensorFileWriter(tmp_path / "fp.safetensors", "x", (4, 2), torch.float32, resume=True)
    w.write([2, 3], torch.full((2, 2), 2.0))
    w.close()
    assert load_file(str(tmp_path / "fp.safetensors"))["x"].tolist() == [[1, 1], [1, 1], [2, 2], [2, 2]]
    # without resume the partial file is started afresh
    w = TensorFileWriter(tmp_path / "g.safetensors", "x", (2, 2), torch.float32)
    w.write([1], torch.ones(1, 2))
    w.close(complete=False)
    w = TensorFileWriter(tmp_path / "g.safetensors", "x", (2, 2), torch.float32)
    w.write([0], torch.ones(1, 2))
    w.close()
    assert load_file(str(tmp_path / "g.safetensors"))["x"].tolist() == [[1, 1], [0, 0]]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("crash mid-write")
    assert target.read_text().strip() == '{\n "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_corrupt_safetensors_is_a_user_error(tmp_path):
    bad = tmp_path / "mean_map.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="cannot read tensors"):
        read_tensors(bad)


def test_full_disk_is_a_user_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    target = tmp_path / "results.json"
    write_json(target, {"a": 1})

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match="No space left on device"):
        write_json(target, {"a": 2})
    monkeypatch.undo()
    assert '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
