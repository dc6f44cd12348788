"""A run's wandb folders, one per process (the first and one per resume), read back and joined into the history
of a run that never stopped (alexnet.training.wandb_history). The end-to-end check, training stopped and resumed, is
tests/test_resume.py."""

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from alexnet.training.wandb_history import STEP, Segment, merge, read_segment, records, segments, write_run
from fast_run import ROOT
from wandb_files import wait_for_exit_records


def log_offline(run_dir: Path, rows: list[dict], run_id: str = "abc", **init) -> Path:
    """A real offline wandb folder under run_dir/wandb, as a training process writes it; its .wandb file."""
    import wandb

    quiet = wandb.Settings(x_disable_stats=True, x_disable_machine_info=True, console="off", disable_git=True)
    run = wandb.init(dir=run_dir, mode="offline", id=run_id, resume="allow", settings=quiet, **init)
    for row in rows:
        run.log(row)
    run.finish()
    wait_for_exit_records(Path(run.dir).parent)
    return Path(run.dir).parent / f"run-{run_id}.wandb"


def test_a_resume_logs_to_the_run_directorys_wandb_run_and_only_a_fresh_start_gets_a_new_one(compose):
    """The id the configured logger gives wandb: a resume (ckpt_path, `last` or a file) must not start a new
    wandb run, or the run's history would be split over several (issue 20)."""
    from hydra.utils import instantiate

    def wandb_id(*overrides: str) -> str:
        cfg = compose("logger=default", *overrides)
        init = instantiate(cfg.logger.wandb)._wandb_init
        assert init["resume"] == "allow"  # online, the server's run of that id is continued, not refused
        assert (Path(cfg.logger.wandb.save_dir) / "wandb_id").read_text() == f"{init['id']}\n"  # the name resumes read
        return init["id"]

    first = wandb_id()
    assert wandb_id("ckpt_path=last") == first
    assert wandb_id("ckpt_path=checkpoints/epoch0.ckpt") == first
    fresh = wandb_id()  # started afresh in the same folder: another run
    assert fresh != first and wandb_id("ckpt_path=last") == fresh


def test_records_are_read_back_as_logged_across_blocks_and_up_to_a_torn_end(tmp_path):
    # A config value longer than two 32 KiB blocks (a record in three or more fragments), and rows past it.
    rows = [{STEP: step, "train/loss": 1.0 / (step + 1), "epoch": step // 100} for step in range(400)]
    path = log_offline(tmp_path, rows, config={"big": "x" * 70000}, project="p", group="g", tags=["t"])
    assert path.stat().st_size > 3 * 32768
    segment = read_segment(path)
    assert segment.config == {"big": "x" * 70000}
    assert (segment.run.run_id, segment.run.project, segment.run.run_group, list(segment.run.tags)) == (
        "abc",
        "p",
        "g",
        ["t"],
    )
    assert [{k: v for k, v in row.items() if k != "_timestamp"} for row in segment.rows] == rows
    # Killed while writing: the file ends inside a record. The rows before it are read, with a warning.
    torn = tmp_path / "torn" / "run-abc.wandb"
    torn.parent.mkdir()
    torn.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    with pytest.warns(UserWarning, match="unreadable from byte"):
        kept = read_segment(torn).rows
    assert 0 < len(kept) < len(rows) and kept == segment.rows[: len(kept)]


def rows_at(steps, value: float) -> list[dict]:
    return [{STEP: step, "train/loss": value} for step in steps]


def test_each_process_replaces_the_earlier_ones_rows_from_its_first_step_on():
    first = Segment(Path("a"), rows=rows_at(range(6), 1.0))  # checkpoint at step 4, killed after logging step 5
    empty = Segment(Path("b"))  # killed before it logged anything
    second = Segment(Path("c"), rows=rows_at(range(4, 9), 2.0))  # from the checkpoint of step 4, killed at 8
    rewound = Segment(Path("d"), rows=rows_at(range(2, 7), 3.0))  # resumed from an older checkpoint, step 2
    assert merge([first, empty, second]) == rows_at(range(4), 1.0) + rows_at(range(4, 9), 2.0)
    assert merge([first, second, rewound]) == rows_at(range(2), 1.0) + rows_at(range(2, 7), 3.0)


def test_the_folders_of_the_directorys_run_are_joined_in_the_order_they_started_and_uploaded_as_one(tmp_path):
    """Three processes of run `abc` (two started in the same second: wandb names the second folder ...-abc-1)
    and a folder of an earlier run in the same directory, `old`, started afresh since."""
    log_offline(tmp_path, rows_at(range(3), 9.0), run_id="old")
    log_offline(tmp_path, rows_at(range(6), 1.0), project="p", config={"lr": 0.01})
    log_offline(tmp_path, rows_at(range(4, 8), 2.0), project="p")
    log_offline(tmp_path, rows_at(range(6, 10), 3.0), project="p", group="full", job_type="ablation-tanh")
    (tmp_path / "wandb_id").write_text("abc\n")
    parts = segments(tmp_path)
    assert [part.rows[0]["train/loss"] for part in parts] == [1.0, 2.0, 3.0]
    joined = rows_at(range(4), 1.0) + rows_at(range(4, 6), 2.0) + rows_at(range(6, 10), 3.0)
    assert [{k: v for k, v in row.items() if k != "_timestamp"} for row in merge(parts)] == joined
    # The one command a user runs; offline it writes the run that `wandb sync` uploads.
    subprocess.run([sys.executable, str(ROOT / "src" / "upload.py"), str(tmp_path), "--offline"], check=True)
    (uploaded,) = (tmp_path / "wandb-upload" / "wandb").glob("offline-run-*/run-abc.wandb")
    run = read_segment(uploaded)
    assert run.rows == merge(parts)  # with the times the training logged them
    assert (run.run.project, run.run.run_group, run.run.job_type, run.config) == (
        "p",
        "full",
        "ablation-tanh",
        {"lr": 0.01},
    )
    write_run(tmp_path, mode="offline")  # again, after more epochs: the earlier upload's folder is replaced
    assert len(list((tmp_path / "wandb-upload" / "wandb").glob("offline-run-*"))) == 1


def leveldb_log(payloads: list[bytes]) -> bytes:
    """The framing of a `.wandb` file written out from LevelDB's log format: each record is cut into fragments that
    fit what is left of a 32 KiB block after a 7-byte header; fewer than 7 bytes left are zero padding, exactly 7
    take a header with an empty fragment."""
    out = bytearray(b":W&B" + (0xBEE1).to_bytes(2, "little") + b"\0")
    for payload in payloads:
        left, first = payload, True
        while True:
            room = 32768 - len(out) % 32768
            if room < 7:
                out += bytes(room)
                continue
            piece, left = left[: room - 7], left[room - 7 :]
            kind = (1 if not left else 2) if first else (4 if not left else 3)
            crc = zlib.crc32(piece, zlib.crc32(bytes([kind])))
            out += crc.to_bytes(4, "little") + len(piece).to_bytes(2, "little") + bytes([kind]) + piece
            first = False
            if not left:
                break
    return bytes(out)


def history(**row) -> bytes:
    record = pb.Record()
    for key, value in row.items():
        record.history.item.add(key=key, value_json=json.dumps(value))
    return record.SerializeToString()


def test_records_framed_to_a_blocks_last_header_are_read_each_on_its_own(tmp_path):
    # The first record ends exactly 7 bytes before the block's end: the next one starts there with an empty fragment.
    pad = next(n for n in range(32000, 33000) if len(history(pad="x" * n)) == 32768 - 3 * 7)
    rows = [{"pad": "x" * pad}, {STEP: 1, "train/loss": 0.5}, {STEP: 2, "lr-PaperSGD": 0.01}]
    path = tmp_path / "run-abc.wandb"
    path.write_bytes(leveldb_log([history(**row) for row in rows]))
    read = [{item.key: json.loads(item.value_json) for item in r.history.item} for r in records(path)]
    assert read == rows  # each row alone: no record's fields carried into the next
