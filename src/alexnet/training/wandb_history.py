"""One wandb history per run directory, however often the run was resumed.

Every process of a run (the first, and one per resume) writes its own wandb folder, `<run dir>/wandb/
offline-run-<time>-<id>` (or `run-<time>-<id>` when logging online), all with the run directory's wandb id
(`alexnet.training.loggers.WandbLogger`). wandb cannot join them: `wandb sync` of several folders of one id keeps
only one folder's history (wandb issues 3841, 5865, 4624), and each folder's `_step` starts again at 0. Here
the folders are read back, ordered by their start, and joined on Lightning's `trainer/global_step`: a resumed
process logs again every row from its checkpoint's step on, so its rows replace an earlier process's rows
from its own first step on (those an earlier process logged after that checkpoint and before it was
killed). The joined history is what a run that never stopped logs; `src/upload.py` writes it as one wandb run.

The folders' `.wandb` files are read here (wandb 0.31 has no Python reader for them): wandb's protobuf
records (`wandb_internal_pb2.Record`) framed as a LevelDB log, in 32 KiB blocks after a 7-byte header.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wandb.proto import wandb_internal_pb2 as pb

from alexnet.training.rundir import UPLOAD

STEP = "trainer/global_step"  # Lightning's step, logged in every row; wandb's own `_step` restarts per process
BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # b":W&B", 0xBEE1, version 0
RECORD = struct.Struct("<IHB")  # crc32 of type byte + data, data length, type: 1 full, 2 first, 3 middle, 4 last


def records(path: Path):
    """The wandb records in a `.wandb` file, in the order they were written. A process killed while writing
    leaves a torn last record: reading stops there, with a warning."""
    data = path.read_bytes()
    if HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise ValueError(f"{path} is not a wandb transaction log")
    position, parts = HEADER.size, b""
    while position + RECORD.size <= len(data):
        if BLOCK - position % BLOCK < RECORD.size:  # a block's last bytes, too few for a record header: padding
            position += BLOCK - position % BLOCK
            continue
        crc, length, kind = RECORD.unpack_from(data, position)
        chunk = data[position + RECORD.size : position + RECORD.size + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            warnings.warn(f"{path}: unreadable from byte {position} on (a process killed while writing?)", stacklevel=2)
            return
        position += RECORD.size + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


@dataclass
class Segment:
    """What one process logged: its wandb run record, config and history rows (`_step` and `_runtime`,
    which restart in every process, left out)."""

    folder: Path
    run: pb.RunRecord = field(default_factory=pb.RunRecord)
    config: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    @property
    def start_step(self) -> int:
        return min(row[STEP] for row in self.rows)


def read_segment(path: Path) -> Segment:
    """One process's `.wandb` file."""
    segment = Segment(path.parent)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":  # the config given to wandb.init is in it
            segment.run = record.run
            segment.config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            segment.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            row = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            segment.rows.append({key: value for key, value in row.items() if key not in ("_step", "_runtime")})
    segment.config = {key: value for key, value in segment.config.items() if not key.startswith("_")}
    return segment


def segments(run_dir: Path, run_id: str | None = None) -> list[Segment]:
    """The wandb folders of the run directory's wandb run (`run_id`, by default the one in `wandb_id`), in
    the order the processes started. Folders of another id are of an earlier run that the directory's
    current one replaced (started afresh, without `ckpt_path`)."""
    run_id = run_id or (run_dir / "wandb_id").read_text().strip()
    # A folder's name gets a suffix (-1, -2) when another process of the run started in the same second.
    files = [
        *(run_dir / "wandb").glob(f"offline-run-*/run-{run_id}.wandb"),
        *(run_dir / "wandb").glob(f"run-*/run-{run_id}.wandb"),
    ]
    found = [read_segment(path) for path in files]
    return sorted(found, key=lambda segment: segment.run.start_time.ToNanoseconds())


def merge(parts: list[Segment]) -> list[dict]:
    """The history of a run that never stopped: each process's rows replace the earlier processes' rows from
    its first step on. A process that logged no row replaces none."""
    rows: list[dict] = []
    for segment in parts:
        if segment.rows:
            rows = [row for row in rows if row[STEP] < segment.start_step] + segment.rows
    return rows


def write_run(run_dir: Path, mode: Literal["online", "offline"] | None = None, run_id: str | None = None) -> Path:
    """Log the run directory's joined history as one wandb run, with its last process's project, group, job
    type, name and tags, its config, and its id (or `run_id`). `mode`: wandb's ("offline": into a folder that
    `wandb sync` uploads; None: WANDB_MODE's, online by default). Its local files go to `<run dir>/
    wandb-upload`, emptied first: an earlier upload's folder would be synced too. Returns the run's folder."""
    import wandb

    parts = segments(run_dir)
    if not parts:
        raise FileNotFoundError(f"{run_dir}: no wandb folder of the run in {run_dir / 'wandb_id'}")
    last, config = parts[-1].run, {}
    for segment in parts:
        config.update(segment.config)
    out = run_dir / UPLOAD
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    run = wandb.init(
        dir=out,
        mode=mode,
        id=run_id or last.run_id,
        resume="never",  # online, a run of this id on the server is an error, not history appended to it
        project=last.project,
        entity=last.entity or None,
        group=last.run_group or None,
        job_type=last.job_type or None,
        name=last.display_name or None,
        tags=list(last.tags),
        notes=last.notes or None,
        config=config,
        # The uploading machine's CPU, console and git are not the training's.
        settings=wandb.Settings(x_disable_stats=True, x_disable_machine_info=True, console="off", disable_git=True),
    )
    run.define_metric(STEP)  # as Lightning's WandbLogger: every metric plotted against the trainer's step
    run.define_metric("*", step_metric=STEP, step_sync=True)
    for row in merge(parts):
        run.log(row)  # `_timestamp` kept: the time the training logged the row
    run.finish()
    (path,) = (out / "wandb").glob(f"*run-*/run-{run.id}.wandb")
    return path.parent
