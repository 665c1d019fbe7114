import json

import pytest

from deepfit.errors import ConfigError
from deepfit.rundir import RunDir


def test_resume_and_finish_drop_temp_files_left_by_a_kill(tmp_path):
    run = RunDir(tmp_path / "out")
    run.start({"a": 1})
    (run.work / "last.ckpt").write_bytes(b"good")
    (run.work / ".last.ckpt.abc123.tmp").write_bytes(b"half-written")  # a kill mid atomic write
    assert run.stored() == {"a": 1}
    assert not list(run.work.glob(".*.tmp"))
    (run.work / ".model.safetensors.x.tmp").write_bytes(b"half")
    final = run.finish(keep=("last.ckpt",))
    assert sorted(p.name for p in final.iterdir()) == ["last.ckpt", "run.json"]
    assert json.loads((final / "run.json").read_text()) == {"a": 1}


def test_new_run_refuses_an_interrupted_one(tmp_path):
    RunDir(tmp_path / "out").start({})
    with pytest.raises(ConfigError, match="--resume"):
        RunDir(tmp_path / "out").check_new()
