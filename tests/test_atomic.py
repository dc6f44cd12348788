"""Writes that a kill cannot leave half done: the store's files, results.json, checkpoints."""

import contextlib
import os
import stat

import pytest
import torch

from alexnet.base import atomic
from alexnet.base.atomic import atomic_write_json
from alexnet.training.checkpoint_io import AtomicCheckpointIO


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


@contextlib.contextmanager
def umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_files_get_the_mode_the_umask_gives_new_files_so_a_teammate_can_read_them(tmp_path):
    with umask(0o022):
        atomic_write_json(tmp_path / "results.json", {})
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1)}, tmp_path / "last.ckpt")
    with umask(0o027):  # a deliberately private setting is kept too
        atomic_write_json(tmp_path / "private.json", {})
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"results.json": 0o644, "last.ckpt": 0o644, "private.json": 0o640}


@pytest.mark.parametrize("store_format", ["raw", "jpeg"])
def test_a_store_prepared_under_umask_022_is_readable_by_everyone(tmp_path, store_format):
    from alexnet.data.prepare import prepare
    from test_prepare import tiny_sample

    root = tiny_sample(tmp_path / "sample")
    with umask(0o022):
        prepare(root, tmp_path / "store", image_size=32, workers=1, progress_bar=False, store_format=store_format)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "store").rglob("*")}
    expected = {name: 0o755 if (tmp_path / name).is_dir() else 0o644 for name in modes}
    assert modes == expected and len(modes) >= 8
