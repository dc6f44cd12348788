"""Training through Lightning: fit, checkpoints, resume, split placement, the smoke run end to end."""

import csv
import json
import struct
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from alexnet.training import train as training
from alexnet.training.results import ERRORS
from alexnet.training.train import train
from fast_run import FAST, ROOT, SMALL, script_env
from recorders import FirstStep

NO_CHECKPOINTS = ["callbacks.best=null", "callbacks.last=null"]  # for tests that read no checkpoint: saves are slow


def read_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_fit_evaluates_and_writes_results(compose, tmp_path, run_data_dir, narrow):
    cfg = compose(*FAST, "trainer.max_epochs=2", data_dir=run_data_dir)
    results = train(cfg)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ERRORS:
        assert 0.0 <= saved[key] <= 1.0
    assert saved["epochs"] == 2 and saved["steps"] == 2 * (35 // 8) and saved["num_classes"] == 6
    assert saved["output_dir"] == str(tmp_path / "run") and saved["name"] == cfg.name  # which run wrote it, where
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("best-epoch") for name in checkpoints)
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for column in (
        "train/loss",
        "train/top1_err",
        "train/top5_err",
        "val/top1_err",
        "val/top5_err",
        "lr-PaperSGD/weights",
    ):
        assert column in rows[0]
    # Validation rows are the epochs of fitting, nothing else; the schedule followed them (not the training error).
    fit_errors = [float(row["val/top1_err"]) for row in rows if row["val/top1_err"]]
    assert [row["epoch"] for row in rows if row["val/top1_err"]] == ["0", "1"]
    plateau = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["lr_plateau"]
    assert len(fit_errors) == 2 and plateau["best"] == pytest.approx(min(fit_errors)) and plateau["last_epoch"] == 2
    # The final evaluation (trainer.test) logs each number once, under results.json's names, for dashboards.
    for key in ERRORS:
        (value,) = [row[f"test/{key}"] for row in rows if row.get(f"test/{key}")]
        assert float(value) == pytest.approx(saved[key])


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a folder's TensorBoard event files (TFRecords of Event protos), by tag: (step, value)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, position = path.read_bytes(), 0
        while position < len(data):
            (length,) = struct.unpack_from("<Q", data, position)
            event = Event.FromString(data[position + 12 : position + 12 + length])  # after length and its crc
            position += 12 + length + 4  # the data's crc
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.mark.slow
def test_logger_tensorboard_writes_each_epochs_errors_as_event_files_beside_the_csv(
    compose, tmp_path, run_data_dir, narrow
):
    fast = [o for o in FAST if o != "logger=csv"]
    cfg = compose(*fast, *NO_CHECKPOINTS, "logger=tensorboard", "trainer.max_epochs=2", data_dir=run_data_dir)
    results = train(cfg)
    scalars = tensorboard_scalars(tmp_path / "run" / "tensorboard")
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    val = [(int(row["step"]), float(row["val/top1_err"])) for row in rows if row["val/top1_err"]]
    assert len(val) == 2  # each epoch's, at the step the CSV has it
    assert [step for step, _ in scalars["val/top1_err"]] == [step for step, _ in val]
    assert [value for _, value in scalars["val/top1_err"]] == pytest.approx([value for _, value in val])
    for key in ("train/loss", "train/top5_err", "val/top5_err", "lr-PaperSGD/weights"):
        assert key in scalars
    for key in ("top1_err", "top1_err_10crop"):
        assert [value for _, value in scalars[f"test/{key}"]] == pytest.approx([results[key]])
    assert not (tmp_path / "run" / "wandb").exists()


def test_training_reads_a_jpeg_store_decoding_each_batch_where_it_trains(compose, run_data_dir, narrow):
    cfg = compose(*FAST, *NO_CHECKPOINTS, "trainer.max_epochs=1", "data.store_format=jpeg", data_dir=run_data_dir)
    results = train(cfg)
    manifest = json.loads((Path(results["store_dir"]) / "manifest.json").read_text())
    assert manifest["settings"]["format"] == "jpeg" and not list(Path(results["store_dir"]).glob("*_images.npy"))
    assert results["steps"] == 35 // 8 and 0.0 <= results["top1_err_10crop"] <= 1.0


def add_callback(monkeypatch, callback: L.Callback) -> None:
    """Gives every trainer that train() builds `callback` beside the configured ones."""
    real_instantiate = training.instantiate

    def with_callback(config, **kwargs):
        if "callbacks" in kwargs and kwargs.get("logger") is not None:
            kwargs["callbacks"] = [*kwargs["callbacks"], callback]
        return real_instantiate(config, **kwargs)

    monkeypatch.setattr(training, "instantiate", with_callback)


@pytest.mark.slow  # three runs end to end
def test_resume_from_last_starts_at_the_checkpoint_and_equals_an_uninterrupted_run(
    compose, tmp_path, run_data_dir, narrow, monkeypatch
):
    """Without random augmentation or dropout the run is deterministic, so a run stopped after epoch 1 and
    resumed must end with exactly the weights and momentum of one that never stopped. Training from scratch
    would end there too: the resumed fit must also start at the checkpoint's step."""
    first_step = FirstStep()
    add_callback(monkeypatch, first_step)
    fixed = [*FAST, "data.crops_flips=false", "data.pca_lighting=0", "model.dropout=0", "evaluate=false"]
    fixed.append("callbacks.best=null")  # resuming reads last.ckpt only
    train(compose(*fixed, "trainer.max_epochs=2", run="straight", data_dir=run_data_dir))
    train(compose(*fixed, "trainer.max_epochs=1", run="resumed", data_dir=run_data_dir))
    first = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert first["global_step"] == 4
    train(compose(*fixed, "trainer.max_epochs=2", "ckpt_path=last", run="resumed", data_dir=run_data_dir))
    assert first_step.starts == [(0, 0), (0, 0), (4, 1)]
    straight = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == straight["global_step"] == 8
    assert resumed["lr_plateau"] == straight["lr_plateau"]
    assert resumed["lr_plateau"]["last_epoch"] == 2 and resumed["lr_plateau"]["best"] < 1
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, msg=key)
    for index, state in straight["optimizer_states"][0]["state"].items():
        torch.testing.assert_close(resumed["optimizer_states"][0]["state"][index]["velocity"], state["velocity"])


class OptimizerDevices(L.Callback):
    """Records, at the end of training, each optimizer state tensor's device beside its parameter's."""

    def on_train_end(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.pairs = [(p.device, s["velocity"].device) for p, s in optimizer.state.items()]
        self.columns = [{p.device for p in column.parameters()} for column in pl_module.net.column]


def test_split_placement_trains_with_each_column_and_its_momentum_on_its_device(
    compose, tmp_path, run_data_dir, narrow, monkeypatch
):
    overrides = [
        *FAST,
        "evaluate=false",
        "model.placement=split",
        "model.devices=[cpu,cpu]",
        "+trainer.strategy._target_=alexnet.training.strategy.ColumnPlacementStrategy",
        "+trainer.strategy.devices=${model.devices}",
    ]
    cfg = compose(*overrides, "trainer.max_epochs=1", data_dir=run_data_dir)
    recorder = OptimizerDevices()
    add_callback(monkeypatch, recorder)
    train(cfg)
    assert isinstance(recorder.pairs, list) and len(recorder.pairs) == 2 * 14 + 2
    assert all(param == velocity for param, velocity in recorder.pairs)
    assert recorder.columns == [{torch.device("cpu")}, {torch.device("cpu")}]
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    # The checkpoint holds the grouped layout, whatever the placement.
    assert state["state_dict"]["net.conv2.conv.weight"].shape == (256, 48, 5, 5)
    # Resuming puts the momentum back beside its column (ColumnPlacementStrategy.load_optimizer_state_dict).
    recorder.pairs = None
    train(compose(*overrides, "trainer.max_epochs=2", "ckpt_path=last", data_dir=run_data_dir))
    assert len(recorder.pairs) == 2 * 14 + 2 and all(param == velocity for param, velocity in recorder.pairs)


@pytest.mark.slow
def test_smoke_experiment_runs_end_to_end_far_below_chance(tmp_path):
    """The README's first command, through the real entry point, wandb offline."""
    env = script_env()
    subprocess.run([sys.executable, str(ROOT / "src" / "train.py")], cwd=tmp_path, env=env, check=True, timeout=900)
    results = json.loads((tmp_path / "logs" / "smoke" / "baseline" / "results.json").read_text())
    assert results["num_classes"] == 10 and results["epochs"] == 12
    assert results["top1_err"] < 0.5, results  # chance is 0.9
    assert results["top1_err_10crop"] < 0.5, results
    # the recipe is stable: the final network is within noise (5 of the 100 validation images) of the best epoch's
    assert abs(results["top1_err"] - results["best_on_val"]["top1_err"]) <= 0.05, results
    assert list((tmp_path / "logs" / "smoke" / "baseline" / "wandb").glob("offline-run-*"))


def test_ensemble_averages_the_members_softmax(narrow):
    from alexnet.training.evaluation import Ensemble
    from alexnet.training.module import AlexNetModule

    optim = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_factor": 0.1}
    torch.manual_seed(0)
    model = {"num_classes": 5, "input_size": SMALL}
    members = [AlexNetModule(model, {**optim, "patience": 1, "max_drops": 3}) for _ in range(3)]
    ensemble = Ensemble(members).eval()
    x = torch.randn(2, 10, 3, SMALL, SMALL) * 50  # ten crops per image
    with torch.no_grad():
        expected = torch.stack([m.eval()(x) for m in members]).mean(0)
        torch.testing.assert_close(ensemble(x), expected)
        assert torch.allclose(ensemble(x).sum(1), torch.ones(2))


@pytest.mark.slow
def test_two_process_ddp_gives_the_same_validation_error_as_one_process(tmp_path):
    """Two CPU processes (gloo) through the real entry point: each validates half of val, the metrics are
    synchronised; the same checkpoint evaluated in one process must give the same error rates."""
    env = script_env()
    common = [*FAST, f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}"]
    ddp = [*common, "+trainer.strategy=ddp", "trainer.devices=2", "trainer.max_epochs=1", "data.eval_batch_size=4"]
    subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *ddp], cwd=tmp_path, env=env, check=True, timeout=600
    )
    (run_dir,) = [p.parent for p in (tmp_path / "logs").rglob("results.json")]
    distributed = json.loads((run_dir / "results.json").read_text())
    best = distributed["checkpoint"]
    single = [*common, f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}"]
    subprocess.run(
        [sys.executable, str(ROOT / "src" / "eval.py"), *single], cwd=tmp_path, env=env, check=True, timeout=600
    )
    one = json.loads((tmp_path / "eval" / "results.json").read_text())
    for key in ERRORS:
        assert one[key] == pytest.approx(distributed[key], abs=1e-6), key


def test_a_non_finite_loss_stops_training_naming_the_step_and_keeps_good_checkpoints(
    compose, tmp_path, run_data_dir, narrow, monkeypatch
):
    # An infinite loss (not a NaN: both must stop training) injected at step 5, the second step of epoch 1.
    real_cross_entropy, steps = torch.nn.functional.cross_entropy, []

    def infinite_at_step_5(logits, labels, *args, **kwargs):
        steps.append(len(steps))
        loss = real_cross_entropy(logits, labels, *args, **kwargs)
        return loss + float("inf") if steps[-1] == 5 else loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", infinite_at_step_5)
    cfg = compose(*FAST, "trainer.max_epochs=3", "evaluate=false", data_dir=run_data_dir)
    with pytest.raises(FloatingPointError, match=r"Non-finite training loss \(inf\) at step 5 \(epoch 1\)"):
        train(cfg)
    assert steps == [0, 1, 2, 3, 4, 5], "training stopped at the step that went wrong"
    last = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 4, "the newest checkpoint is the end of epoch 0, from before the bad step"
    for checkpoint in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):
        weights = read_checkpoint(checkpoint)["state_dict"]
        assert all(torch.isfinite(w).all() for w in weights.values()), checkpoint.name


def training_losses(compose, seed: int, run: str, tmp_path, data_dir) -> list[str]:
    train(
        compose(
            *FAST,
            *NO_CHECKPOINTS,
            "trainer.max_epochs=1",
            "evaluate=false",
            "trainer.log_every_n_steps=1",
            f"seed={seed}",
            run=run,
            data_dir=data_dir,
        )
    )
    rows = (tmp_path / run / "csv" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/loss")
    return [r.split(",")[column] for r in rows[1:] if r.split(",")[column]]


@pytest.mark.slow  # three runs end to end
def test_the_same_seed_gives_identical_losses_on_the_cpu_and_another_seed_does_not(
    compose, tmp_path, run_data_dir, narrow
):
    first = training_losses(compose, 0, "a", tmp_path, run_data_dir)
    assert len(first) == 4
    assert training_losses(compose, 0, "b", tmp_path, run_data_dir) == first
    assert training_losses(compose, 1, "c", tmp_path, run_data_dir) != first


@pytest.mark.slow
def test_an_ablation_sweep_runs_as_one_multirun_and_the_report_reads_it(tmp_path):
    env = script_env()
    sweep = ["-m", "ablation=baseline,no_lrn", *FAST, "trainer.max_epochs=1", f"paths.log_dir={tmp_path / 'logs'}"]
    subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *sweep], cwd=tmp_path, env=env, check=True, timeout=900
    )
    runs = sorted(p.parent.name for p in (tmp_path / "logs" / "smoke" / "multirun").rglob("results.json"))
    assert len(runs) == 2
    assert "ablation-baseline" in runs[0] and "ablation-no_lrn" in runs[1]
    sweep_dir = tmp_path / "logs" / "smoke" / "multirun"
    subprocess.run([sys.executable, str(ROOT / "src" / "report.py"), str(sweep_dir)], check=True, timeout=300)
    report = (sweep_dir / "report.md").read_text().splitlines()
    rows = [line.split(" | ")[:3] for line in report if line.startswith("| ") and not line.startswith("| variant")]
    assert rows == [["| baseline", "1", "final"], ["| no_lrn", "1", "final"], ["| centre crop only", "1", "final"]]
    assert (sweep_dir / "val_error.png").is_file()


@pytest.mark.slow
def test_a_sweep_through_submitit_runs_its_jobs_in_parallel_each_in_its_own_run_directory(tmp_path):
    """hydra/launcher=local: the SLURM launcher's code path on one machine. Both jobs start at once and
    share one sample dataset and store, which one of them prepares while the other waits."""
    env = script_env()
    sweep = ["-m", "hydra/launcher=local", "ablation=baseline,no_dropout", *FAST, "trainer.max_epochs=1"]
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *sweep, *paths], cwd=tmp_path, env=env, check=True, timeout=900
    )
    sweep_dir = tmp_path / "logs" / "smoke" / "multirun"
    runs = sorted(sweep_dir.rglob("results.json"))
    assert (
        len(runs) == 2 and "ablation-baseline" in runs[0].parent.name and "ablation-no_dropout" in runs[1].parent.name
    )
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2  # each ran as a submitit job
    (manifest,) = (tmp_path / "data" / "stores").glob("*/manifest.json")  # one store, shared by both jobs
    store = json.loads(manifest.read_text())
    assert store["splits"]["train"]["images"] == 35


class ValidationErrors(L.Callback):
    """Replaces each epoch's val/top1_err, as the best checkpoint reads it, by the given numbers: a run whose best
    validation epoch is chosen by the test."""

    def __init__(self, errors):
        self.errors = list(errors)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            trainer.callback_metrics["val/top1_err"] = torch.tensor(self.errors[trainer.current_epoch])


def test_results_are_the_final_networks_and_the_best_validation_epochs_are_kept_beside_them_named(
    compose, tmp_path, run_data_dir, narrow, monkeypatch
):
    add_callback(monkeypatch, ValidationErrors([0.25, 0.75]))  # epoch 0 is "best"; the run ends after epoch 1
    results = train(compose(*FAST, "trainer.max_epochs=2", data_dir=run_data_dir))
    run = tmp_path / "run"
    assert results["epochs"] == 2 and results["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    assert results["network"].startswith("the final network: the weights after epoch 1")
    best = results["best_on_val"]
    assert best["epoch"] == 0 and Path(best["checkpoint"]).name.startswith("best-epoch000")
    assert "measured on: optimistic" in best["selected_on"]
    # each number is that of its own network's evaluation, logged once under its own name
    with (run / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for stage, errors in (("test", results), ("best_on_val", best)):
        for key in ERRORS:
            (value,) = [row[f"{stage}/{key}"] for row in rows if row.get(f"{stage}/{key}")]
            assert float(value) == pytest.approx(errors[key])
    final_weights = read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    best_weights = read_checkpoint(best["checkpoint"])["state_dict"]
    assert not torch.equal(final_weights["net.fc8.weight"], best_weights["net.fc8.weight"])  # two networks


def test_the_printed_errors_add_the_best_validation_epochs_only_where_it_is_not_the_final_network():
    from alexnet.training.results import errors_line

    final = {"top1_err": 0.4, "top5_err": 0.2, "top1_err_10crop": 0.38, "top5_err_10crop": 0.19, "epochs": 12}
    rates = "top1_err=0.4000  top5_err=0.2000  top1_err_10crop=0.3800  top5_err_10crop=0.1900"
    assert errors_line(final) == rates
    best = {"epoch": 8, "top1_err": 0.3, "top5_err": 0.1, "top1_err_10crop": 0.29, "top5_err_10crop": 0.09}
    assert errors_line({**final, "best_on_val": {**best, "epoch": 11}}) == rates  # the last epoch is the final network
    assert errors_line({**final, "best_on_val": best}).splitlines() == [
        rates,
        "best on validation (epoch 8, chosen on these images): "
        "top1_err=0.3000  top5_err=0.1000  top1_err_10crop=0.2900  top5_err_10crop=0.0900",
    ]
