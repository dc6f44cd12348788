"""Writes that a kill cannot leave half done: the store's files, results.json, checkpoints."""

import pytest
import torch

from alexnet import atomic
from alexnet.atomic import AtomicCheckpointIO, atomic_write_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {"complete": True})
    with pytest.raises(RuntimeError), atomic.atomic_file(path) as f:
        f.write(b'{"comp')
        raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "complete": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_checkpoint_save_interrupted_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
