import errno
import os
import pickle

import pytest
import torch

from deepfit.engine import checkpoint as ckpt
from deepfit.engine.checkpoint import MAGIC, load_checkpoint, save_checkpoint
from deepfit.errors import CheckpointError


def _state(value=1.0):
    return {"format": "deepfit-checkpoint", "w": torch.full((100,), value), "meta": {"epoch": 3}}


def test_round_trip(tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(_state(2.0), path)
    state = load_checkpoint(path)
    assert torch.equal(state["w"], torch.full((100,), 2.0)) and state["meta"] == {"epoch": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temp files left


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(_state(), path)
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"last\.ckpt is not a complete deepfit checkpoint"):
            load_checkpoint(path)


def test_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(_state(), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"last\.ckpt is corrupt \(checksum mismatch\)"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.ckpt does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_crafted_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    """A file with a valid trailer whose payload is a code-running pickle is refused unrun."""
    monkeypatch.chdir(tmp_path)
    import hashlib

    payload = pickle.dumps({"format": "deepfit-checkpoint", "x": _Evil()})
    path = tmp_path / "evil.ckpt"
    path.write_bytes(payload + MAGIC + hashlib.sha256(payload).digest())
    with pytest.raises(CheckpointError, match="could not be loaded safely"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(_state(1.0), path)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.os, "replace", full_disk)
    with pytest.raises(CheckpointError, match=r"could not write .*last\.ckpt: No space left on device"):
        save_checkpoint(_state(5.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.full((100,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_write_error_during_data_write(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(_state(1.0), path)
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt.os, "fsync", failing_fsync)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_checkpoint(_state(9.0), path)
    monkeypatch.setattr(ckpt.os, "fsync", real_fsync)
    assert torch.equal(load_checkpoint(path)["w"], torch.full((100,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_not_a_deepfit_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    save_checkpoint({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not a deepfit checkpoint"):
        load_checkpoint(path)
