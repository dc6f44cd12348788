"""Reading wandb's offline files in tests, once wandb has finished writing them."""

import time
from pathlib import Path

from alexnet.training.wandb_history import records


def wait_for_exit_records(folder: Path, timeout: float = 120) -> None:
    """wandb's service may write a run's .wandb file after the process that logged it has ended (seen on a
    loaded machine: the file grew after run.finish() returned); complete, it ends with the run's exit record."""
    deadline = time.monotonic() + timeout
    for path in Path(folder).rglob("run-*.wandb"):
        while not any(record.WhichOneof("record_type") == "exit" for record in records(path)):
            assert time.monotonic() < deadline, f"{path} has no exit record"
            time.sleep(1)
