"""Figure 1's network against the facts of the authors' layer file (docs/paper.md, "Figure 1's network"), its
training against a plain PyTorch loop over the same tensors, the stop below the level, the runs as a user starts
them, and the report from made-up runs."""

import json
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.data.cifar_datamodule import CIFAR10DataModule, epoch_order
from alexnet.network.cifar import CifarConvNet
from alexnet.reporting import figure1 as report
from alexnet.training.classifier import ClassifierModule
from cifar_files import write_class_folders, write_python_release
from fast_run import ROOT, run_script

NET = {"_target_": "alexnet.network.cifar.CifarConvNet", "activation": "relu", "num_classes": 10}


def test_the_feature_maps_are_32_16_8_4_with_pooling_that_rounds_up():
    net = CifarConvNet()
    x = torch.zeros(2, 3, 32, 32)
    sizes = {}
    for name, layer in net.features.named_children():
        x = layer(x)
        sizes[name] = tuple(x.shape[1:])
    assert sizes["conv1"] == (32, 32, 32) and sizes["pool1"] == (32, 16, 16)
    assert sizes["conv2"] == (32, 16, 16) and sizes["pool2"] == (32, 8, 8)
    assert sizes["conv3"] == (64, 8, 8) and sizes["pool3"] == (64, 4, 4)
    assert net.fc.in_features == 64 * 4 * 4
    for name in ("pool1", "pool2", "pool3"):  # cuda-convnet's rounding: ceil((n - 3) / 2) + 1 at any side
        pool = getattr(net.features, name)
        for side in (31, 32, 33):
            assert pool(torch.zeros(1, 1, side, side)).shape[-1] == math.ceil((side - 3) / 2) + 1


def test_the_layers_are_in_the_layer_files_order_and_have_its_activation():
    names = [name for name, _ in CifarConvNet("tanh").features.named_children()]
    assert names == ["conv1", "pool1", "act1", "conv2", "act2", "pool2", "conv3", "act3", "pool3"]
    net = CifarConvNet("tanh")
    assert isinstance(net.features.pool1, nn.MaxPool2d)
    assert isinstance(net.features.pool2, nn.AvgPool2d) and isinstance(net.features.pool3, nn.AvgPool2d)
    assert all(isinstance(getattr(net.features, f"act{i}"), nn.Tanh) for i in (1, 2, 3))
    assert all(isinstance(getattr(CifarConvNet("relu").features, f"act{i}"), nn.ReLU) for i in (1, 2, 3))
    for conv in (net.features.conv1, net.features.conv2, net.features.conv3):
        assert conv.kernel_size == (5, 5) and conv.padding == (2, 2) and conv.stride == (1, 1)


def test_the_parameter_count_is_the_four_layers_counted_by_hand():
    conv1 = 3 * 5 * 5 * 32 + 32
    conv2 = 32 * 5 * 5 * 32 + 32
    conv3 = 32 * 5 * 5 * 64 + 64
    fc = 64 * 4 * 4 * 10 + 10
    assert sum(p.numel() for p in CifarConvNet().parameters()) == conv1 + conv2 + conv3 + fc == 89_578


def test_the_initial_weights_are_gaussian_with_each_layers_std_and_the_biases_zero():
    torch.manual_seed(0)
    net = CifarConvNet()
    for layer, std in (
        (net.features.conv1, 1e-4),
        (net.features.conv2, 0.01),
        (net.features.conv3, 0.01),
        (net.fc, 0.01),
    ):
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 4 * std / math.sqrt(w.numel())
        assert w.std().item() == pytest.approx(std, rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0


def test_a_bad_activation_or_class_count_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="model.activation=sigmoid"):
        CifarConvNet("sigmoid")
    with pytest.raises(ValueError, match="model.num_classes=1"):
        CifarConvNet(num_classes=1)


@pytest.fixture
def tiny(tmp_path):
    root = write_python_release(tmp_path, per_batch=20)  # 100 training images, 20 test
    dm = CIFAR10DataModule(str(root), str(tmp_path / "store"), batch_size=16, eval_batch_size=7, seed=0)
    return dm


def test_the_trainer_trains_exactly_as_a_plain_loop_over_the_same_batches(tiny):
    """Two epochs under Lightning and in plain PyTorch from the same initial weights: the same weights after, and
    the same training errors, each the fraction of the epoch's images misclassified as they were trained on."""
    L.seed_everything(0, verbose=False)
    module = ClassifierModule(NET, lr=0.01, momentum=0.9)
    start = {k: v.clone() for k, v in module.net.state_dict().items()}
    errors = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            errors.append(float(trainer.callback_metrics["train/top1_err"]))

    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Record()],
    )  # fmt: skip
    trainer.fit(module, tiny)

    net = CifarConvNet()
    net.load_state_dict(start)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images, labels = tiny.tensors["train_images"], tiny.tensors["train_labels"]
    plain_errors = []
    for epoch in range(2):
        order, wrong = epoch_order(len(labels), 0, epoch), 0
        for start_at in range(0, len(order), 16):
            index = order[start_at : start_at + 16]
            logits = net(images[index])
            wrong += int((logits.argmax(1) != labels[index]).sum())
            optimizer.zero_grad()
            F.cross_entropy(logits, labels[index]).backward()
            optimizer.step()
        plain_errors.append(wrong / len(labels))
    assert errors == pytest.approx(plain_errors, abs=1e-6)
    for name, weight in net.state_dict().items():
        torch.testing.assert_close(module.net.state_dict()[name], weight)
    assert errors[1] != errors[0]  # it learned something: the comparison is not of two untrained nets


def test_a_non_finite_loss_stops_the_run_and_names_its_step(tiny):
    module = ClassifierModule(NET, lr=1e38, momentum=0.9)  # the first step overflows float32
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, tiny)
    assert module.diverged_at is not None and trainer.current_epoch < 5


def figure1_run(tmp_path, *overrides, multirun=False):
    root = tmp_path / "tree"
    if not root.exists():
        write_class_folders(root, train_count=60, test_count=20)
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    flags = ["-m"] if multirun else []
    return run_script(ROOT / "src" / "figure1.py", *flags, f"data.root={root}", *paths, *overrides, cwd=tmp_path)


def test_a_run_stops_at_the_first_epoch_below_the_level_and_says_so(tmp_path):
    """A first run to the cap gives the curve; a second with the level between epochs 2 and 3's errors stops at
    epoch 3, with that curve, and its output has a line per epoch (the run's output goes to a file here)."""
    done = figure1_run(tmp_path, "optim.lr=0.01", "trainer.max_epochs=4", "stop.patience=10")
    assert done.returncode == 0, done.stderr[-2000:]
    first = json.loads((tmp_path / "logs/figure1/optim.lr-0.01__stop.patience-10/results.json").read_text())
    curve = [row["train_err"] for row in first["curve"]]
    assert len(curve) == 4 and first["stopped"] == "cap"
    assert curve[2] < curve[1], curve  # so that a level between them exists
    level = (curve[1] + curve[2]) / 2
    done = figure1_run(tmp_path, "optim.lr=0.01", "trainer.max_epochs=4", "stop.patience=10", f"stop.level={level}")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "training error" in line and "epoch" in line]
    assert [line.split("epoch ")[1].split(":")[0] for line in lines if line.startswith("INFO")] == ["1/4", "2/4", "3/4"]
    results = json.loads(next((tmp_path / "logs/figure1").glob("*stop.level*/results.json")).read_text())
    assert results["epochs_to_level"] == 3 and results["stopped"] == "reached" and results["epochs"] == 3
    assert [row["train_err"] for row in results["curve"]] == curve[:3]
    assert results["provenance"]["data"]["source"]["form"] == "class-folders"
    again = figure1_run(tmp_path, "optim.lr=0.01", "trainer.max_epochs=4", "stop.patience=10", f"stop.level={level}")
    assert again.returncode == 0 and "nothing was changed" in again.stdout
    assert json.loads(next((tmp_path / "logs/figure1").glob("*stop.level*/results.json")).read_text()) == results
    assert not list((tmp_path / "logs").rglob("previous-runs"))
    assert len(results["provenance"]["data"]["fingerprint_xxh3"]) == 32


@pytest.mark.slow
def test_a_sweep_goes_on_past_a_rate_that_diverges(tmp_path):
    done = figure1_run(tmp_path, "optim.lr=1e38,0.01", "trainer.max_epochs=2", "data.batch_size=8", multirun=True)
    assert done.returncode == 0, done.stderr[-2000:]
    sweep = tmp_path / "logs/figure1/multirun"
    # lr 1e38: the first step's weights overflow float32, the next loss is not finite
    diverged = json.loads((sweep / "data.batch_size-8__optim.lr-1e+38/results.json").read_text())
    assert diverged["stopped"] == "diverged" and diverged["diverged_at_step"] is not None
    assert json.loads((sweep / "data.batch_size-8__optim.lr-0.01/results.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("stop.level=1.5", "stop.level=1.5: must be in (0, 1)"),
        ("model.activaton=tanh", "did you mean model.activation"),
    ],
)
def test_a_bad_key_or_value_is_refused_before_a_run_folder_exists(tmp_path, override, said):
    done = figure1_run(tmp_path, override)
    assert done.returncode == 2 and said in done.stderr
    assert not (tmp_path / "logs").exists()


SOURCE = {"path": "/data/cifar10", "form": "class-folders", "files": 60000}


def made_up(tmp_path, activation, lr, seed, errors, max_epochs, level=0.25, stopped=None):
    folder = tmp_path / f"{activation}-{lr}-{seed}-{max_epochs}"
    folder.mkdir()
    reached = next((i + 1 for i, e in enumerate(errors) if e < level), None)
    results = {
        "experiment": "figure1", "activation": activation, "lr": lr, "seed": seed, "level": level,
        "max_epochs": max_epochs, "epochs": len(errors), "epochs_to_level": reached,
        "stopped": stopped or ("reached" if reached else "cap"), "diverged_at_step": 3 if stopped else None,
        "last_train_err": errors[-1], "wall_time_s": 60.0,
        "curve": [{"epoch": i + 1, "train_err": e, "test_err": e} for i, e in enumerate(errors)],
        "provenance": {
            "git": {"commit": "abc", "dirty": False}, "device": "cpu (2 cores)",
            "data": {"fingerprint_xxh3": "f" * 32, "source": SOURCE},
        },
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))
    return folder


@pytest.fixture
def sweep(tmp_path):
    # the screen: three rates each, 2 epochs; tanh's highest diverges
    made_up(tmp_path, "relu", 0.001, 0, [0.7, 0.5], 2)
    made_up(tmp_path, "relu", 0.002, 0, [0.6, 0.4], 2)
    made_up(tmp_path, "relu", 0.005, 0, [0.65, 0.45], 2)
    made_up(tmp_path, "tanh", 0.01, 0, [0.8, 0.7], 2)
    made_up(tmp_path, "tanh", 0.02, 0, [0.75, 0.6], 2)
    made_up(tmp_path, "tanh", 0.05, 0, [0.9], 2, stopped="diverged")
    # the seeds at the chosen rates: ReLU at 3, 4, 4 epochs; tanh at 12, 16 and once not in 20
    for seed, n in ((0, 3), (1, 4), (2, 4)):
        made_up(tmp_path, "relu", 0.002, seed, [0.6, 0.4, *[0.3] * (n - 3), 0.2][:n], 50)
    for seed, n in ((0, 12), (1, 16)):
        made_up(tmp_path, "tanh", 0.02, seed, [0.5] * (n - 1) + [0.24], 50)
    made_up(tmp_path, "tanh", 0.02, 2, [0.5] * 20, 20)
    # the check: ReLU's rate above the chosen one, run on to the level (its screen's first epochs again)
    made_up(tmp_path, "relu", 0.005, 0, [0.65, 0.45, 0.3, 0.28, 0.2], 50)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text('{"experiment": "fig')
    return tmp_path


def test_the_report_chooses_each_fastest_rate_on_the_screen_and_gives_the_ratio_with_its_spread(sweep):
    runs, skipped = report.find_runs([sweep])
    assert report.fastest(runs, "relu") == 0.002 and report.fastest(runs, "tanh") == 0.02
    found = report.results(runs)
    assert found["relu"].epochs == [3, 4, 4] and found["tanh"].epochs == [12, 16]
    assert not found["tanh"].all_reached
    text = report.report(runs, skipped)
    assert "| relu | 0.002 | seed 0: 3, seed 1: 4, seed 2: 4 | 4 (3-4) | about 6 |" in text
    assert (
        "| tanh | 0.02 | seed 0: 12, seed 1: 16, seed 2: not reached in 20 (last 0.500) | 14 (12-16) | about 36 |"
        in text
    )
    assert "ratio tanh / ReLU of the medians: 3.5 (seed extremes 3.0-5.3; paper: about 6)" in text
    assert "(a lower bound: 1 tanh run(s) never reached the level)" in text
    assert "| tanh | 0.05 | 0.900, - | diverged |  |" in text
    assert "| relu | 0.002 | 0.600, 0.400 | 3 | yes |" in text  # seed 0's longer run stands for the screen's
    assert "| relu | 0.001 | 0.700, 0.500 | - |  |" in text  # ended with the screen
    assert "| relu | 0.005 | 0.650, 0.450 | 5 |  |" in text  # the check's run stands for the screen's
    assert "relu: the check at lr 0.005 (seed 0): 5 epochs, later than the chosen rate's 3" in text

    assert report.neighbours(runs, "relu") == [0.001, 0.005] and report.neighbours(runs, "tanh") == [0.01, 0.05]
    assert "commit: abc" in text and "fingerprint " + "f" * 32 in text
    assert any("broken" in line and "unreadable" in line for line in skipped)


def test_the_report_writes_the_figure_and_the_markdown(sweep, tmp_path):
    runs, skipped = report.find_runs([sweep])
    written = report.write(runs, tmp_path / "out", skipped)
    assert [p.name for p in written] == ["report.md", "figure1.png"]
    assert (tmp_path / "out" / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = report.figure(runs)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 0.75) and ax.get_xlim()[0] == 0 and ax.get_xlim()[1] >= 36
    labels = [line.get_label() for line in ax.get_lines()]
    assert "ReLU, lr 0.002" in labels and "tanh, lr 0.02" in labels and "paper (tanh)" in labels


def test_the_chosen_rates_print_for_the_seeds_stage(sweep):
    done = run_script(ROOT / "src" / "report.py", "--figure1", str(sweep), "--chosen", cwd=sweep)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["relu 0.002", "tanh 0.02"]


def test_a_rate_that_reaches_the_level_within_the_screen_is_the_fastest(tmp_path):
    made_up(tmp_path, "relu", 0.001, 0, [0.5, 0.4, 0.3], 3)
    made_up(tmp_path, "relu", 0.002, 0, [0.4, 0.2], 3)  # stopped at epoch 2, below the level
    made_up(tmp_path, "relu", 0.005, 0, [0.3], 3, stopped="diverged")
    runs, _ = report.find_runs([tmp_path])
    assert report.fastest(runs, "relu") == 0.002
    text = report.report(runs)
    assert "ratio tanh / ReLU: not measured" in text  # no tanh runs
    assert "relu: 0 seed(s) past the screen; the spread needs at least 3" in text


def test_a_longer_run_stands_for_a_shorter_one_of_the_same_rate_and_seed(tmp_path):
    made_up(tmp_path, "tanh", 0.01, 0, [0.6, 0.5, 0.4], 3)
    (tmp_path / "longer").mkdir()
    longer = made_up(tmp_path / "longer", "tanh", 0.01, 0, [0.6, 0.2], 50)  # reached the level at epoch 2
    runs, _ = report.find_runs([tmp_path])
    assert [r.directory for r in runs] == [longer]


def test_the_check_stage_reuses_the_screens_finished_run_folder(tmp_path):
    """A screen run, then the same rate to the level (stage=check) in its folder: the screen's run is set aside;
    the screen run again finds the longer run and changes nothing."""
    screen = figure1_run(tmp_path, "stage=screen", "model.activation=tanh", "optim.lr=0.01", "trainer.max_epochs=1")
    assert screen.returncode == 0, screen.stderr[-2000:]
    check = figure1_run(tmp_path, "stage=check", "model.activation=tanh", "optim.lr=0.01", "trainer.max_epochs=2")
    assert check.returncode == 0, check.stderr[-2000:]
    folder = tmp_path / "logs/figure1/model.activation-tanh__optim.lr-0.01"
    assert json.loads((folder / "results.json").read_text())["epochs"] == 2
    assert (folder / "previous-runs/1/results.json").is_file()
    again = figure1_run(tmp_path, "stage=screen", "model.activation=tanh", "optim.lr=0.01", "trainer.max_epochs=1")
    assert "nothing was changed" in again.stdout
    assert json.loads((folder / "results.json").read_text())["epochs"] == 2


def test_a_tree_with_other_than_ten_classes_is_refused_naming_model_num_classes(tmp_path):
    root = write_class_folders(tmp_path / "tree", train_count=20, test_count=10)
    for split in ("train", "test"):
        for file in (root / split / "cat").iterdir():
            file.unlink()
        (root / split / "cat").rmdir()
    done = figure1_run(tmp_path)
    assert done.returncode == 2 and "model.num_classes=10, but data.root=" in done.stderr and "9 classes" in done.stderr


@pytest.mark.slow
def test_the_whole_experiment_script_screens_seeds_checks_and_reports(tmp_path):
    """tools/figure1.sh on a tiny class-folder tree (at most 2 epochs a run): every run of the screen's grid, the
    chosen rates' three seeds, the neighbours' check, then the report and the figure in OUT."""
    import subprocess

    from fast_run import script_env

    root = write_class_folders(tmp_path / "tree", train_count=60, test_count=20)
    env = script_env(ALEXNET_LOG_DIR=str(tmp_path / "logs"), ALEXNET_DATA_DIR=str(tmp_path / "data"))
    command = ["bash", str(ROOT / "tools" / "figure1.sh"), str(root), str(tmp_path / "out"), "trainer.max_epochs=2"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs, skipped = report.find_runs([tmp_path / "logs/figure1/multirun"])
    assert not skipped
    grid = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1}
    for activation in ("relu", "tanh"):
        assert {r.key[1] for r in runs if r.key[0] == activation and r.key[2] == 0} == grid
        chosen = report.fastest(runs, activation)
        assert {r.key[2] for r in runs if r.key[:2] == (activation, chosen)} == {0, 1, 2}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Epochs to the level" in text and (tmp_path / "out" / "figure1.png").is_file()


def test_a_check_capped_before_the_level_compares_the_curves_at_its_last_epoch(tmp_path):
    def run(folder, lr, errors, cap):
        (tmp_path / folder).mkdir()
        directory = made_up(tmp_path / folder, "tanh", lr, 0, errors, cap)
        return report.Run(directory, json.loads((directory / "results.json").read_text()))

    chosen = run("chosen", 0.02, [0.6, 0.5, 0.4, 0.35], 50)
    behind = report._verdict(run("behind", 0.01, [0.6, 0.55, 0.45], 3), chosen)
    ahead = report._verdict(run("ahead", 0.05, [0.6, 0.5, 0.38], 3), chosen)
    assert behind == "not reached in 3 epochs; at epoch 3 its training error 0.450 against the chosen rate's 0.400: " \
        "behind, as the screen predicts"  # fmt: skip
    assert ahead.endswith("0.380 against the chosen rate's 0.400: ahead: the screen may not have picked the fastest")
