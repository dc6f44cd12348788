"""A run directory holds one run at a time and one run's history: reruns set the earlier run aside whole, a
resumed run reads only its own files and must agree with its checkpoint, a run that cannot train is refused."""

import json
from pathlib import Path

import pytest
import torch

from alexnet.base.errors import CheckpointError, ConfigError, UserError
from alexnet.training.rundir import PREVIOUS, RECORD, RunDirectoryBusy, locked, set_aside
from alexnet.training.train import train
from conftest import compose_config
from fast_run import FAST

ONE_EPOCH = [*FAST, "trainer.max_epochs=1"]


def record(run: Path) -> dict:
    return json.loads((run / RECORD).read_text())


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


@pytest.mark.slow  # four runs end to end
def test_a_rerun_sets_the_earlier_run_aside_whole_says_where_and_writes_its_own_results(
    compose, tmp_path, run_data_dir, narrow, capsys
):
    run = tmp_path / "run"
    first = train(compose(*FAST, "trainer.max_epochs=2", data_dir=run_data_dir))
    capsys.readouterr()
    # The same folder, fewer epochs (trainer.max_epochs is not part of the folder's name), interrupted after its
    # first epoch (it had no results yet), then resumed: it finishes its own run.
    train(compose(*ONE_EPOCH, "evaluate=false", data_dir=run_data_dir))
    assert f"held an earlier run (finished, 2 epochs, top-1 error {first['top1_err']:.4f}" in capsys.readouterr().out
    aside = run / PREVIOUS / "1"
    assert json.loads((aside / "results.json").read_text()) == json.loads(json.dumps(first))
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoints", "csv", "results.json", RECORD]
    best = Path(first["best_on_val"]["checkpoint"]).name
    assert {p.name for p in (aside / "checkpoints").iterdir()} == {"last.ckpt", best}
    assert not (run / "results.json").exists()  # never the earlier run's numbers for this one
    second = train(compose(*ONE_EPOCH, "trainer.max_epochs=2", "ckpt_path=last", data_dir=run_data_dir))
    assert "finished its" not in capsys.readouterr().out
    assert results(run) == json.loads(json.dumps(second))
    assert second["run_id"] == record(run)["id"] != first["run_id"]
    assert [a["resumed_from"] for a in record(run)["attempts"]] == [None, str(run / "checkpoints" / "last.ckpt")]
    assert second["attempts"] == 2
    assert second["wall_time_s"] == round(sum(a["seconds"] for a in record(run)["attempts"]), 1)
    assert second["wall_time_s"] > record(run)["attempts"][1]["seconds"]
    # The earlier run's history is untouched, and a third start sets this one aside beside it.
    assert json.loads((aside / "results.json").read_text()) == json.loads(json.dumps(first))
    train(compose(*ONE_EPOCH, "evaluate=false", data_dir=run_data_dir))
    assert sorted(p.name for p in (run / PREVIOUS).iterdir()) == ["1", "2"]
    assert json.loads((run / PREVIOUS / "2" / "results.json").read_text())["run_id"] == second["run_id"]


def test_a_second_process_on_a_run_directory_is_refused_naming_the_holder(compose, tmp_path):
    run = tmp_path / "run"
    with locked(run), pytest.raises(RunDirectoryBusy, match=rf"{run} is in use by process \d+ on .* since "):
        train(compose(*ONE_EPOCH))
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # the refused run touched nothing
    with locked(run):  # released when its holder is done
        pass


def test_resuming_with_other_settings_lists_every_disagreement_naming_both_values(
    compose, tmp_path, run_data_dir, narrow
):
    train(compose(*ONE_EPOCH, "evaluate=false", data_dir=run_data_dir))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    changed = ["model.columns=1", "optim.lr=0.02", "data.pca_lighting=0", "seed=3"]
    with pytest.raises(CheckpointError) as refused:
        train(compose(*ONE_EPOCH, *changed, f"ckpt_path={last}", run="other", data_dir=run_data_dir))
    message = str(refused.value)
    for line in (
        "model.columns: checkpoint 2, this command 1",
        "optim.lr: checkpoint 0.001, this command 0.02",
        "data.pca_lighting: checkpoint 0.1, this command 0",
        "seed: checkpoint 0, this command 3",
    ):
        assert line in message
    assert not (tmp_path / "other" / RECORD).exists()  # refused before this run started
    # More epochs, other loader workers and another evaluation batch are changes a resumed run honours.
    honoured = ["trainer.max_epochs=2", "data.num_workers=1", "data.eval_batch_size=5", "evaluate=false"]
    train(compose(*FAST, *honoured, "ckpt_path=last", data_dir=run_data_dir))
    assert last.read_bytes() != before


def test_resuming_on_another_store_is_refused_naming_both_sources(narrow_run, run_data_dir, narrow):
    other = [*ONE_EPOCH, "data.sample.seed=1", "evaluate=false"]  # data.root is not in the folder's name
    with pytest.raises(CheckpointError, match=r"data: checkpoint trained on the store made from .*seed0.*seed1"):
        train(compose_config(narrow_run, *other, "ckpt_path=last", data_dir=run_data_dir))
    assert len(record(narrow_run / "run")["attempts"]) == 1


def test_a_batch_larger_than_the_training_split_is_refused_before_the_run_starts(narrow_run, run_data_dir, narrow):
    files = lambda: {p: p.stat().st_mtime_ns for p in (narrow_run / "run").rglob("*") if p.name != ".lock"}  # noqa: E731
    before = files()
    with pytest.raises(ConfigError, match=r"data.batch_size=36 is larger than the 35 training images.* at most 35"):
        train(compose_config(narrow_run, *ONE_EPOCH, "data.batch_size=36", data_dir=run_data_dir))
    # the earlier run is where it was, not set aside for a run that could not start
    assert files() == before


def test_a_run_that_trains_no_step_is_an_error_not_a_result(compose, tmp_path, run_data_dir, narrow):
    with pytest.raises(UserError, match="trained no step"):
        train(compose(*ONE_EPOCH, "+trainer.limit_train_batches=0", data_dir=run_data_dir))
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_finished_run_resumed_with_ckpt_path_last_reads_only_its_own_results(
    compose, tmp_path, run_data_dir, narrow, capsys
):
    """results.json that describes another network than the checkpoint (more steps) is not this run's."""
    train(compose(*ONE_EPOCH, data_dir=run_data_dir))
    run = tmp_path / "run"
    stale = {**results(run), "steps": 99}
    (run / "results.json").write_text(json.dumps(stale))
    again = train(compose(*ONE_EPOCH, "ckpt_path=last", data_dir=run_data_dir))
    assert "finished its" not in capsys.readouterr().out
    assert again["steps"] == torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]


def test_the_best_checkpoint_holds_weights_only_and_resuming_from_it_is_refused(
    compose, narrow_run, run_data_dir, narrow
):
    (best,) = (narrow_run / "run" / "checkpoints").glob("best-*.ckpt")
    assert "optimizer_states" not in torch.load(best, map_location="cpu", weights_only=False)
    with pytest.raises(CheckpointError, match=r"holds the network's weights only .* resume from last.ckpt"):
        train(compose(*FAST, "trainer.max_epochs=2", f"ckpt_path={best}", data_dir=run_data_dir))


def test_every_file_a_run_writes_is_set_aside_together_and_an_empty_folder_is_no_run(tmp_path):
    for name in ("checkpoints/last.ckpt", "csv/metrics.csv", "wandb/offline-run-1/run-x.wandb", "wandb-upload/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    for name in ("wandb_id", "results.json", RECORD, "hpc_ckpt_1.ckpt", "train.log"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()  # empty: nothing of a run
    aside = set_aside(tmp_path)
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        ["checkpoints", "csv", "wandb", "wandb-upload", "wandb_id", "results.json", RECORD, "hpc_ckpt_1.ckpt"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREVIOUS, "tensorboard", "train.log"]  # Hydra's log stays
    assert set_aside(tmp_path) is None


def test_the_store_identifies_the_data_and_a_checkpoint_from_before_it_was_recorded_compares_the_root():
    from alexnet.training.resume import disagreements

    here = {"root": "/new/imagenet", "store_dir": "/stores/imagenet"}
    store = {"manifest_xxh3": "m1", "source": "/new/imagenet"}
    moved = {"model": {}, "optim": {}, "data": {"root": "/old/imagenet"}, "store": {**store, "source": "/old/imagenet"}}
    assert disagreements(moved, {}, {}, here, store) == []  # the same store: the dataset was only moved
    older = {**moved, "store": None}
    assert disagreements(older, {}, {}, here, store) == [
        "data.root: checkpoint '/old/imagenet', this command '/new/imagenet'"
    ]


def test_a_set_aside_run_is_described_by_what_its_files_say_and_a_torn_file_is_left_out(tmp_path):
    from alexnet.training.rundir import describe

    (tmp_path / RECORD).write_text(json.dumps({"attempts": [{"started": "2026-12-07T06:00:00"}]}))
    (tmp_path / "results.json").write_text(json.dumps({"epochs": 3, "top1_err": 0.12345}))
    assert describe(tmp_path) == "finished, 3 epochs, top-1 error 0.1235, started 2026-12-07T06:00:00"
    (tmp_path / "results.json").write_text('{"epochs": 3, "top1_')  # killed as it wrote
    assert describe(tmp_path) == "started 2026-12-07T06:00:00"
    (tmp_path / "results.json").write_text(json.dumps({"epochs": 3}))  # a key short
    (tmp_path / RECORD).write_text(json.dumps({"attempt": 1}))
    assert describe(tmp_path) == "unfinished"


def test_each_attempt_is_recorded_with_when_where_which_job_and_what_it_resumed(tmp_path, monkeypatch):
    from alexnet.training.rundir import Attempt

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    Attempt(tmp_path, None, None)
    record = json.loads((tmp_path / RECORD).read_text())
    Attempt(tmp_path, record, str(tmp_path / "last.ckpt"))
    first, second = json.loads((tmp_path / RECORD).read_text())["attempts"]
    keys = {"started", "host", "pid", "slurm_job", "command", "resumed_from", "seconds"}
    assert set(first) == set(second) == keys
    assert (first["slurm_job"], first["resumed_from"], second["resumed_from"]) == (
        "4242",
        None,
        str(tmp_path / "last.ckpt"),
    )
    assert first["host"] and first["started"][:4].isdigit() and first["seconds"] >= 0
