"""eval.py just works on a checkpoint: the network as it was trained, the data its run used, the accelerator
the machine has; overrides that contradict the checkpoint are refused, naming both values."""

import json
import os
from pathlib import Path

import pytest
import torch

from alexnet.base.checkpoints import KEY, digest, read_checkpoint, with_digest
from alexnet.base.config import plain
from alexnet.base.errors import CheckpointError
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.network.model import AlexNet
from alexnet.training.evaluation import evaluate_checkpoints
from alexnet.training.results import ERRORS
from alexnet.training.train import train
from fast_run import FAST, ROOT, SMALL, run_script

NO_DATA = [o for o in FAST if not o.startswith(("data.", "model."))]  # data and network: the checkpoint's


@pytest.fixture
def trained(paper_run):
    """A short run of the paper's network on the sample set (6 classes, 67-pixel crops, LRN on): its results and
    best checkpoint."""
    results, _ = paper_run
    return results


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.lrn=false", "model.lrn=False but .* was trained with model.lrn=True"),
        ("model.activation=tanh", "model.activation=tanh but .* was trained with model.activation=relu"),
        ("data.crop_size=195", f"data.crop_size=195 but .* was trained on {SMALL}-pixel crops"),
    ],
)
def test_overrides_that_contradict_the_checkpoint_are_refused_naming_both_values(compose, trained, override, message):
    cfg = compose(*FAST, f"ckpt_path={trained['checkpoint']}", override, run="eval")
    with pytest.raises(CheckpointError, match=message):
        evaluate_checkpoints(cfg)


def test_an_unreadable_checkpoint_is_a_clear_error(compose, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*broken.ckpt"):
        evaluate_checkpoints(compose(*FAST, f"ckpt_path={broken}", run="eval"))


@pytest.mark.slow
def test_the_readmes_eval_command_works_on_a_cpu_machine_with_the_checkpoints_data(trained, tmp_path):
    """`python src/eval.py experiment=full ckpt_path=FILE`: experiment=full trains on GPUs and ImageNet; the
    checkpoint came from the sample set on the CPU. eval.py takes the data and the network from the checkpoint
    and the accelerator from the machine, and prints the errors it writes."""
    done = run_script(ROOT / "src" / "eval.py", "experiment=full", f"ckpt_path={trained['checkpoint']}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("logs/eval/*/results.json")
    results = json.loads(path.read_text())
    for key in ERRORS:
        assert results[key] == pytest.approx(trained[key]), key  # the same network on the same images
        assert f"{key}={results[key]:.4f}" in done.stdout
    assert results["model"]["num_classes"] == 6 and results["data"]["crop_size"] == SMALL
    assert results["epochs"] == trained["epochs"] == 1  # counted as train.py counts them
    assert (
        f"data.store_dir={trained['store_dir']}" in done.stdout or "on the data of the checkpoint's run" in done.stdout
    )
    assert results["store_dir"] == trained["store_dir"]


def saved_variant(source, target: Path, change) -> str:
    """A copy of the checkpoint at `source`, changed by `change(checkpoint)`, saved as train.py saves (checksummed)."""
    checkpoint = read_checkpoint(source)
    change(checkpoint)
    torch.save(with_digest(checkpoint), target)
    return str(target)


def test_a_store_of_other_classes_is_refused_naming_both_counts(compose, trained, run_data_dir):
    other = compose(*FAST, "data.sample.classes=5", "model.num_classes=5", data_dir=run_data_dir, run="other").data
    ImageNetDataModule(**plain(other)).prepare_data()  # eval.py never prepares a store: another run made this one
    cfg = compose(*FAST, f"ckpt_path={trained['checkpoint']}", "data.sample.classes=5", data_dir=run_data_dir)
    with pytest.raises(CheckpointError, match=r"has 6 classes, the store .*c5.* 5"):
        evaluate_checkpoints(cfg)  # the nested data.sample.classes override is applied, not ignored


def test_other_wnids_are_refused(compose, trained, tmp_path, run_data_dir):
    def reverse(checkpoint):
        checkpoint["ImageNetDataModule"]["store"]["wnids"].reverse()

    path = saved_variant(trained["checkpoint"], tmp_path / "reversed.ckpt", reverse)
    with pytest.raises(CheckpointError, match="trained on other classes \\(WNIDs\\)"):
        evaluate_checkpoints(compose(*FAST, f"ckpt_path={path}", data_dir=run_data_dir))


def test_a_checkpoint_without_data_settings_needs_the_data_named(compose, trained, tmp_path, run_data_dir):
    def forget(checkpoint):
        del checkpoint["datamodule_hyper_parameters"]

    path = saved_variant(trained["checkpoint"], tmp_path / "old.ckpt", forget)
    with pytest.raises(CheckpointError, match=r"old.ckpt holds no data settings .* data.root=\.\.\. data.store_dir"):
        evaluate_checkpoints(compose(*NO_DATA, f"ckpt_path={path}", data_dir=run_data_dir))


def test_an_ensemble_of_other_data_or_class_counts_is_refused(compose, trained, tmp_path, run_data_dir):
    def other_store(checkpoint):
        checkpoint["ImageNetDataModule"]["store"]["manifest_xxh3"] = "0" * 32

    def five_classes(checkpoint):
        checkpoint["hyper_parameters"]["model"]["num_classes"] = 5
        for key in ("net.fc8.weight", "net.fc8.bias"):
            checkpoint["state_dict"][key] = checkpoint["state_dict"][key][:5]

    elsewhere = saved_variant(trained["checkpoint"], tmp_path / "elsewhere.ckpt", other_store)
    with pytest.raises(CheckpointError, match=r"trained on different data .*elsewhere.ckpt: the store with manifest"):
        evaluate_checkpoints(compose(*NO_DATA, f"ckpt_paths=[{trained['checkpoint']},{elsewhere}]"))
    five = saved_variant(trained["checkpoint"], tmp_path / "five.ckpt", five_classes)
    with pytest.raises(CheckpointError, match=r"five.ckpt has 5 classes, the store .* 6"):
        evaluate_checkpoints(compose(*NO_DATA, f"ckpt_paths=[{trained['checkpoint']},{five}]"))


def test_a_missing_store_is_named_and_never_made_again(compose, trained, tmp_path, run_data_dir):
    cfg = compose(*FAST, f"ckpt_path={trained['checkpoint']}", f"data.store_dir={tmp_path / 'moved'}")
    with pytest.raises(CheckpointError, match=rf"No store at data.store_dir={tmp_path / 'moved'}: .* never makes one"):
        evaluate_checkpoints(cfg)
    assert not (tmp_path / "moved").exists()


def test_a_checkpoint_with_a_flipped_byte_is_refused_wherever_it_is_read(compose, trained, tmp_path, run_data_dir):
    damaged = tmp_path / "damaged.ckpt"
    data = bytearray(Path(trained["checkpoint"]).read_bytes())
    data[len(data) // 2] ^= 0x10  # in the middle: fc6 and fc7's weights and momentum are most of the file
    damaged.write_bytes(bytes(data))
    for read in (
        lambda: evaluate_checkpoints(compose(*FAST, f"ckpt_path={damaged}", data_dir=run_data_dir)),
        lambda: AlexNet.from_checkpoint(damaged),
        lambda: train(compose(*FAST, f"ckpt_path={damaged}", "trainer.max_epochs=2", data_dir=run_data_dir)),
    ):
        with pytest.raises(CheckpointError, match=rf"{damaged} is damaged: its tensors differ from the checksum"):
            read()
    assert read_checkpoint(trained["checkpoint"])[KEY] == digest(read_checkpoint(trained["checkpoint"]))


class _RunsCode:
    """What a checkpoint from elsewhere can carry: unpickling it would call os.system."""

    def __reduce__(self):
        return (os.system, ("touch ran",))


def test_a_checkpoint_that_would_run_code_as_it_is_read_is_refused_not_run(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "planted.ckpt"
    checkpoint = read_checkpoint(trained["checkpoint"])
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], "extra": _RunsCode()}
    torch.save(checkpoint, planted)
    for read in (lambda: read_checkpoint(planted), lambda: AlexNet.from_checkpoint(planted)):
        with pytest.raises(CheckpointError, match=rf"ckpt_path: cannot read {planted}"):
            read()
    assert not (tmp_path / "ran").exists()


def test_checkpoints_and_results_name_their_data_by_absolute_paths(trained):
    data = read_checkpoint(trained["checkpoint"])["datamodule_hyper_parameters"]
    assert Path(data["root"]).is_absolute() and Path(data["store_dir"]).is_absolute()
    assert Path(trained["store_dir"]).is_absolute() and Path(trained["checkpoint"]).is_absolute()
