"""The debug group (conf/debug/): a broken run found in seconds, the recipe in miniature, a profile."""

import csv

import pytest

from alexnet.training.checks import problems
from alexnet.training.train import train
from fast_run import FAST


@pytest.mark.parametrize("name", ["fast", "limit", "profile"])
def test_each_debug_config_composes_and_passes_the_checks(compose, name):
    assert problems(compose(f"debug={name}")) == []


def test_debug_fast_runs_one_batch_through_the_whole_pipeline_and_writes_no_checkpoint(
    compose, tmp_path, run_data_dir, narrow
):
    results = train(compose(*FAST, "debug=fast", data_dir=run_data_dir))
    assert results["steps"] == 1 and 0.0 <= results["top1_err_10crop"] <= 1.0
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_debug_limit_trains_a_share_of_the_batches_with_checkpoints_and_logs(compose, tmp_path, run_data_dir, narrow):
    overrides = [*FAST, "debug=limit", "trainer.limit_train_batches=2", "evaluate=false"]
    results = train(compose(*overrides, data_dir=run_data_dir))
    assert results["epochs"] == 2 and results["steps"] == 2 * 2  # 2 of the 4 batches, twice
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        assert [row["epoch"] for row in csv.DictReader(f) if row["val/top1_err"]] == ["0", "1"]
