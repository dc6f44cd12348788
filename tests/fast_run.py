"""Overrides for a small, fast run of the real config: 6 classes, 67-pixel crops (pool5 1x1, the smallest input
the network takes), CSV logs; and a narrow network for runs that test the plumbing around it."""

import contextlib

import pytest

from alexnet.network import model

FAST = [
    "logger=csv",
    "callbacks.progress=null",
    "data.sample.classes=6",
    "data.sample.train_per_class=6",
    "data.sample.val_per_class=3",
    "model.num_classes=6",
    "data.crop_size=67",
    "data.batch_size=8",
    "data.eval_batch_size=9",
    "data.num_workers=0",
    "data.prepare_workers=1",
    "+trainer.enable_model_summary=false",
]

NARROW_FC = 256


@contextlib.contextmanager
def narrow_network():
    """fc6 and fc7 with NARROW_FC units instead of the paper's 4096, in this process, while it lasts. At 4096 the
    two layers hold most of the weights: every checkpoint (weights and momentum) is hundreds of MB to write and
    fsync, and every optimizer step updates them all. Runs that test what Lightning, the checkpoints and the
    data do with a network use this one; tests/test_model.py pins the paper's sizes, and conftest.paper_run
    trains the paper's width."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "FC_WIDTH", NARROW_FC)
        yield
