"""A full disk while a checkpoint or results.json is written is a clear error naming the file, and the previous
file stays loadable; what a kill left half-written is cleared at the next start; a finished run stays as it is."""

import contextlib
import csv
import errno
import json
import subprocess
from pathlib import Path

import pytest
import torch

from alexnet.base import atomic
from alexnet.base.atomic import json_bytes, remove_temporaries
from alexnet.base.errors import DiskFullError
from alexnet.training.checkpoint_io import AtomicCheckpointIO
from alexnet.training.results import write_results
from alexnet.training.rundir import LOCK, Attempt
from alexnet.training.train import train
from fast_run import FAST

RESULTS = {"top1_err": 0.5, "top5_err": 0.1, "top1_err_10crop": 0.4, "top5_err_10crop": 0.1}
RESULTS.update(num_classes=6, epochs=1, steps=4)


class FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written, as a full disk's do."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)


@contextlib.contextmanager
def disk_with_room(monkeypatch, room: int):
    real = atomic.os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), room))
    yield
    monkeypatch.setattr(atomic.os, "fdopen", real)


def test_a_checkpoint_that_fills_the_disk_is_a_clear_error_and_the_previous_one_loads(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)
    # torch.save turns the failed write into RuntimeError("unexpected pos"): the error must still say "disk full".
    with disk_with_room(monkeypatch, 2000), pytest.raises(DiskFullError, match=f"checkpoint {path} could not"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(100_000)}, path)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_results_that_fill_the_disk_are_a_clear_error_and_the_previous_ones_stay(tmp_path, monkeypatch):
    write_results(tmp_path, RESULTS)
    with disk_with_room(monkeypatch, 10), pytest.raises(DiskFullError, match="results.json could not be written"):
        write_results(tmp_path, {**RESULTS, "top1_err": 0.25})
    assert json.loads((tmp_path / "results.json").read_text())["top1_err"] == 0.5


def test_on_a_real_full_file_system_too(tmp_path):
    """The same on a 1 MB tmpfs, where this machine lets the tests mount one (root)."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC tests cover the same path")
    try:
        io, path = AtomicCheckpointIO(), small / "last.ckpt"
        io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)
        with pytest.raises(DiskFullError, match="The disk is full"):
            io.save_checkpoint({"global_step": 2, "w": torch.zeros(1_000_000)}, path)
        assert io.load_checkpoint(path)["global_step"] == 1
        assert [p.name for p in small.iterdir()] == ["last.ckpt"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_temporaries_of_interrupted_writes_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".last.ckpt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "last.ckpt").write_bytes(b"a checkpoint")
    (tmp_path / "notes.tmp").write_bytes(b"not ours: no leading dot")
    assert [p.name for p in remove_temporaries(tmp_path)] == [".last.ckpt.x1y2z3.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "notes.tmp"]


def test_a_run_clears_the_temporaries_a_kill_left_and_a_finished_run_resumed_changes_nothing(
    compose, tmp_path, run_data_dir, narrow, capsys
):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / ".last.ckpt.killed.tmp").write_bytes(b"half a checkpoint")
    results = train(compose(*FAST, "trainer.max_epochs=1", data_dir=run_data_dir))
    assert not (checkpoints / ".last.ckpt.killed.tmp").exists()

    def files():  # but the lock, which names the process holding it
        found = (p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != LOCK)
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in found}

    before = files()
    again = train(compose(*FAST, "trainer.max_epochs=1", "ckpt_path=last", data_dir=run_data_dir))
    assert again == json.loads((tmp_path / "run" / "results.json").read_text()) == json.loads(json.dumps(results))
    assert "has finished its 1 epochs" in capsys.readouterr().out
    assert files() == before
    assert Path(results["checkpoint"]).is_file()


def test_a_metrics_log_that_fills_the_disk_is_an_error_naming_it(compose, tmp_path, run_data_dir, narrow, monkeypatch):
    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full)
    with pytest.raises(DiskFullError, match=rf"the metrics log {tmp_path / 'run' / 'csv' / 'metrics.csv'} could"):
        train(compose(*FAST, "trainer.max_epochs=1", "evaluate=false", data_dir=run_data_dir))


def test_a_run_record_that_fills_the_disk_is_an_error_naming_it(tmp_path, monkeypatch):
    with disk_with_room(monkeypatch, 10), pytest.raises(DiskFullError, match=rf"record {tmp_path / 'run.json'} could"):
        Attempt(tmp_path, None, None)


def test_json_files_are_written_with_sorted_keys_so_the_same_content_gives_the_same_bytes():
    assert json_bytes({"b": 1, "a": {"d": 2, "c": 3}}) == b'{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'
