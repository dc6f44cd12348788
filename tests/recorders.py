"""Callbacks that record what a training run did, for tests in this process or in a subprocess."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import lightning as L
import torch


class FirstStep(L.Callback):
    """The global step and epoch of each fit's first training batch: where training really started. With
    `path`, each is also appended to that file as "step epoch", for runs in another process."""

    def __init__(self, path: str | None = None):
        self.starts: list[tuple[int, int]] = []
        self.path = Path(path) if path else None
        self._new_fit = False

    def on_train_start(self, trainer, pl_module):
        self._new_fit = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._new_fit:
            self.starts.append((trainer.global_step, trainer.current_epoch))
            self._new_fit = False
            if self.path is not None:
                with self.path.open("a") as f:
                    f.write(f"{trainer.global_step} {trainer.current_epoch}\n")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class RandomStreams(L.Callback):
    """Per process, appended to `path`.rank<r>: "weights <digest>" when a fit is set up, and "step <n> <digest>"
    for each training batch, the digest of torch's generator state there: after the batch's crops, flips and
    lighting, before its dropout masks, all of which are drawn from it."""

    def __init__(self, path: str):
        self.path = path

    def _write(self, trainer, line: str) -> None:
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            f.write(line + "\n")

    def setup(self, trainer, pl_module, stage):
        weights = b"".join(t.cpu().numpy().tobytes() for t in pl_module.state_dict().values())
        self._write(trainer, f"weights {_digest(weights)}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._write(trainer, f"step {trainer.global_step} {_digest(torch.get_rng_state().numpy().tobytes())}")


class SignalSelf(L.Callback):
    """Sends `signal_name` (e.g. SIGTERM, SIGKILL) to its own process when the hook `hook` (a Callback hook's name,
    such as "on_train_batch_start") is called for the `call`-th time: an interruption at a chosen point, not after a
    sleep. With `pause`, it first creates that file and waits until the test removes it: the test does what it
    must while the run stands at that point."""

    def __init__(self, signal_name: str, hook: str, call: int = 1, pause: str | None = None):
        self.signal, self.remaining = getattr(signal, signal_name), call
        self.pause = Path(pause) if pause else None
        setattr(self, hook, self._count)

    def _count(self, *args, **kwargs):
        self.remaining -= 1
        if self.remaining == 0:
            if self.pause is not None:
                self.pause.touch()
                while self.pause.exists():
                    time.sleep(0.05)
            os.kill(os.getpid(), self.signal)
