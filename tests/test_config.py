"""The configuration users type: experiments compose, and mistakes fail at once, naming the key."""

import hashlib
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import InterpolationResolutionError, ValidationError

from alexnet.base.config import plain
from alexnet.base.rules import StoreFormat
from alexnet.training.train import build
from fast_run import ROOT


def test_default_is_the_smoke_experiment_on_the_sample_data(compose):
    cfg = compose()
    assert cfg.name == "smoke"
    assert cfg.data.sample is not None and cfg.model.num_classes == cfg.data.sample.classes
    assert cfg.trainer.accelerator == "cpu"


def test_full_experiment_is_the_paper_run(compose):
    cfg = compose("experiment=full")
    model, data, optim = plain(cfg.model), plain(cfg.data), plain(cfg.optim)
    assert model == {
        "num_classes": 1000,
        "activation": "relu",
        "lrn": True,
        "lrn_convention": "paper",
        "overlap_pool": True,
        "dropout": 0.5,
        "dropout_scaling": "paper",
        "columns": 2,
        "placement": "grouped",
        "devices": None,  # one device: trainer=two_gpu gives each column its own
        "remove_conv": None,
        "input_size": 227,
        "init": "paper",
    }
    assert (data["image_size"], data["crop_size"], data["batch_size"], data["pca_lighting"]) == (256, 227, 128, 0.1)
    assert data["sample"] is None and data["crops_flips"] and data["mean_subtraction"]
    assert (optim["lr"], optim["momentum"], optim["weight_decay"], optim["lr_factor"]) == (0.01, 0.9, 0.0005, 0.1)
    assert optim["max_drops"] == 3 and cfg.trainer.max_epochs == 90
    assert optim["decay_biases"] is False  # Section 5 decays weights (docs/paper-notes.md)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "two_gpu"])
def test_every_trainer_trains_the_papers_epochs_with_atomic_checkpoints_and_its_own_sharding(compose, trainer):
    cfg = compose("experiment=full", f"trainer={trainer}")
    assert cfg.trainer.max_epochs == 90 and cfg.trainer.default_root_dir == cfg.paths.output_dir
    assert [p._target_ for p in cfg.trainer.plugins] == ["alexnet.training.checkpoint_io.AtomicCheckpointIO"]
    assert cfg.trainer.use_distributed_sampler is False  # the datamodule shards its own batches


def test_two_gpu_trainer_splits_the_columns(compose):
    cfg = compose("experiment=full", "trainer=two_gpu")
    assert cfg.model.placement.value == "split" and list(cfg.model.devices) == ["cuda:0", "cuda:1"]
    assert cfg.trainer.strategy._target_ == "alexnet.training.strategy.ColumnPlacementStrategy"


@pytest.mark.parametrize(("devices", "nodes"), [(8, 1), (4, 2)])
def test_slurm_launcher_starts_a_task_per_gpu_on_as_many_nodes_as_the_trainer_uses(compose, devices, nodes):
    cfg = compose("hydra/launcher=slurm", "trainer=ddp", f"trainer.devices={devices}", f"trainer.num_nodes={nodes}")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (devices, devices, nodes)
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0  # requeued at its time limit


def test_slurm_launcher_needs_a_number_of_gpus_per_node(compose):
    cfg = compose("hydra/launcher=slurm", "trainer=ddp")  # ddp's devices=auto suits torchrun, not SLURM tasks
    with pytest.raises(InterpolationResolutionError, match=r"trainer.devices.*not 'auto'"):
        _ = cfg.hydra.launcher.tasks_per_node


def test_unknown_key_fails_naming_it(compose):
    with pytest.raises(ConfigCompositionException, match="model.colums"):
        compose("model.colums=1")


def test_unknown_activation_fails_naming_the_allowed_values(compose):
    with pytest.raises(ConfigCompositionException) as info:
        compose("model.activation=sigmoid")
    assert "relu" in str(info.value.__cause__) and "tanh" in str(info.value.__cause__)


def test_wrong_type_fails_naming_the_key(compose):
    with pytest.raises(ConfigCompositionException) as info:
        compose("model.dropout=half")
    assert isinstance(info.value.__cause__, ValidationError) and "dropout" in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.columns=3", "model.columns"),
        ("data.crop_size=300", "data.crop_size=300: must be at most data.image_size=256"),
        ("model.placement=split", "model.devices|cuda"),
        ("data.val_crops=5", "data.val_crops"),
    ],
)
def test_bad_values_fail_before_any_work(compose, tmp_path, override, message):
    cfg = compose(override, "model.devices=[cpu]" if "split" in override else "seed=0")
    with pytest.raises((ValueError, RuntimeError), match=message):
        build(cfg)
    assert not (tmp_path / "data").exists(), "nothing was prepared"


def test_full_without_imagenet_fails_within_seconds_saying_where_to_point_data_root(compose, tmp_path):
    from alexnet.data.layout import LayoutError

    cfg = compose("experiment=full", "model.placement=grouped")
    with pytest.raises(LayoutError, match=r"data\.root=.*imagenet does not exist"):
        build(cfg)


def test_run_names_come_from_the_overrides_and_stay_short():
    from alexnet.base.config import run_name

    assert run_name("") == "baseline"
    assert run_name("model.lrn-false__data.crop_size-224") == "model.lrn-false__data.crop_size-224"
    assert run_name("model.devices-[cpu,cpu]") == "model.devices-_cpu_cpu_"
    long = ",".join(f"data.key{i}=value{i}" for i in range(40))
    assert len(run_name(long)) <= 120 and run_name(long) != run_name(long + ",x=1")
    assert "/" not in run_name("data.root=/datasets/x")
    assert run_name("data.root-ImageNet") == "data.root-ImageNet"  # case is kept: paths and overrides take it


def test_a_run_name_is_kept_up_to_120_characters_and_longer_ones_are_cut_to_100_and_a_hash():
    from alexnet.base.config import run_name

    assert run_name("a" * 120) == "a" * 120
    longer = "a" * 121
    assert run_name(longer) == "a" * 100 + "-" + hashlib.sha1(longer.encode()).hexdigest()[:10]


@pytest.mark.parametrize(("devices", "refused"), [(1, False), (0, True), (-1, True), (True, True), ("auto", True)])
def test_a_nodes_task_count_is_a_positive_number_of_devices(devices, refused):
    from alexnet.base.config import tasks_per_node

    if refused:
        with pytest.raises(ValueError, match="trainer.devices"):
            tasks_per_node(devices)
    else:
        assert tasks_per_node(devices) == devices


# conf/ablation/<name>.yaml -> the keys it changes, and to what (docs/paper.md, "What each feature is worth").
ABLATIONS = {
    "tanh": {("model", "activation"): "tanh"},
    "no_lrn": {("model", "lrn"): False},
    "lrn_code": {("model", "lrn_convention"): "code"},
    "no_overlap_pool": {("model", "overlap_pool"): False},
    "no_dropout": {("model", "dropout"): 0.0},
    "one_column": {("model", "columns"): 1},
    "no_pca_lighting": {("data", "pca_lighting"): 0.0},
    "no_crops_flips": {("data", "crops_flips"): False},
    "no_conv3": {("model", "remove_conv"): 3},
    "no_conv4": {("model", "remove_conv"): 4},
    "no_conv5": {("model", "remove_conv"): 5},
}


def flat(cfg) -> dict:
    return {(group, key): value for group in ("model", "data", "optim") for key, value in plain(cfg[group]).items()}


@pytest.mark.parametrize("experiment", ["full", "smoke"])
@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_each_ablation_differs_from_the_baseline_in_exactly_its_keys(compose, experiment, ablation):
    baseline = flat(compose(f"experiment={experiment}"))
    varied = flat(compose(f"experiment={experiment}", f"ablation={ablation}"))
    changed = {key: value for key, value in varied.items() if baseline[key] != value}
    assert changed == ABLATIONS[ablation]


def test_every_ablation_file_is_covered():

    files = {p.stem for p in (ROOT / "conf" / "ablation").glob("*.yaml")}
    assert files == set(ABLATIONS) | {"baseline"}


def test_wandb_puts_a_sweep_in_one_group_with_a_job_type_per_variant(compose):
    from hydra.utils import instantiate

    inits = {}
    for ablation in ("baseline", "tanh", "no_lrn"):
        cfg = compose("experiment=full", f"ablation={ablation}", run=ablation)
        logger = instantiate(cfg.logger.wandb)
        assert logger._offline  # nothing waits on the network unless the user asks
        inits[ablation] = logger._wandb_init
    assert {init["group"] for init in inits.values()} == {"full"}
    assert [init["job_type"] for init in inits.values()] == ["ablation-baseline", "ablation-tanh", "ablation-no_lrn"]
    assert inits["tanh"]["name"] == "full/ablation-tanh" and inits["tanh"]["dir"].endswith("tanh")


@pytest.mark.parametrize("store_format", ["jpeg", StoreFormat.jpeg])
def test_the_default_stores_name_is_the_sources_name_a_hash_of_its_path_the_format_and_the_size(store_format):
    from alexnet.base.config import store_name

    source = "/datasets/imagenet"
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]  # stores prepared before keep their folder's name
    assert store_name(source, store_format, 256) == f"imagenet-{digest}-jpeg-256"


def test_the_runs_last_checkpoint_goes_where_callbacks_last_says(compose, tmp_path):
    from alexnet.training.train import checkpoint_dir

    assert checkpoint_dir(compose(f"callbacks.last.dirpath={tmp_path}/elsewhere")) == tmp_path / "elsewhere"
    assert checkpoint_dir(compose("callbacks.last=null")) == Path(compose().paths.output_dir) / "checkpoints"
