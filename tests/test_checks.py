"""Every config value is checked before any work: out of range, it fails in seconds, naming the key and what
is allowed, without touching data and without leaving a run folder behind (each key's own rule at its edges:
tests/test_rules.py)."""

import pytest

from alexnet.base.errors import ConfigError
from alexnet.training import checks
from alexnet.training.checks import check, problems, unknown_keys
from fast_run import ROOT, run_script


def test_the_shipped_experiments_pass(compose):
    assert problems(compose()) == []
    assert problems(compose("experiment=full")) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.crop_size=300"], "data.crop_size=300: must be at most data.image_size=256"),
        (["data.crop_size=227", "model.input_size=224"], "model.input_size=224: must equal data.crop_size=227"),
        (["model.placement=split", "model.columns=1"], "model.placement=split needs model.columns=2"),
        (["model.placement=split", "model.devices=[cpu]"], "two model.devices"),
        (["data.crop_size=60"], "data.crop_size=60: too small for the network"),
        (["ckpt_path=nowhere.ckpt"], "no checkpoint file at nowhere.ckpt"),
        (["ckpt_paths=[a.ckpt]"], "no checkpoint file at a.ckpt"),
    ],
)
def test_values_that_must_agree_are_refused_naming_both(compose, overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        check(compose(*overrides))


def test_ckpt_path_last_is_allowed_before_the_run_has_a_checkpoint(compose):
    assert problems(compose("ckpt_path=last")) == []


@pytest.mark.parametrize("trainer", ["gpu", "ddp", "two_gpu"])
def test_a_gpu_trainer_on_a_machine_without_cuda_is_refused_naming_it_and_saying_to_use_the_cpu(
    compose, monkeypatch, trainer
):
    cfg = compose(f"trainer={trainer}")
    monkeypatch.setattr(checks, "_cuda_available", lambda: True)
    assert problems(cfg, devices=True) == []
    monkeypatch.setattr(checks, "_cuda_available", lambda: False)
    assert problems(cfg) == []  # prepare.py and summary.py run no trainer: a CPU node prepares for a GPU run
    (found,) = problems(cfg, devices=True)
    assert (
        found.startswith(f"trainer={trainer} (trainer.accelerator=gpu): needs a CUDA GPU")
        and "use trainer=cpu" in found
    )


def test_prepare_and_summary_ask_no_gpu_of_the_machine():
    """They run no trainer (conf/tool.yaml): a CPU node prepares the store for experiment=full's trainer=gpu."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        for name in ("tool", "summary", "config", "eval"):
            cfg = compose(name, overrides=["experiment=full"], return_hydra_config=True)
            assert instantiate(cfg.hydra.callbacks.check_config).devices is (name in ("config", "eval")), name
    GlobalHydra.instance().clear()


def test_the_trainer_that_needs_a_gpu_is_named_by_its_key_where_no_trainer_choice_is_known(compose, monkeypatch):
    cfg = compose()
    monkeypatch.setattr(checks, "_cuda_available", lambda: False)
    cfg.trainer.accelerator = "cuda"
    del cfg.hydra  # a config composed by hand, without Hydra's record of the choices
    assert problems(cfg, devices=True)[0].startswith("trainer.accelerator=cuda: needs a CUDA GPU")


GROUPS = [p.name for p in (ROOT / "conf").iterdir() if p.is_dir()]
MODEL_KEYS = (
    "activation, columns, devices, dropout, dropout_scaling, init, input_size, lrn, lrn_convention, num_classes"
)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dropuot=0", f"model.dropuot (did you mean model.dropout?): model.* holds {MODEL_KEYS}"),
        ("+model.dropuot=0", "model.dropuot (did you mean model.dropout?): model.* holds "),
        ("++model.dropuot=0", "model.dropuot (did you mean model.dropout?): model.* holds "),
        ("~model.dropuot", "model.dropuot (did you mean model.dropout?): model.* holds "),
        (
            "+data.sample.clases=3",
            "data.sample.clases (did you mean data.sample.classes?): data.sample.* holds classes",
        ),
        ("paths.log_dri=x", "paths.log_dri (did you mean paths.log_dir?): paths.* holds data_dir, log_dir, output_dir"),
        ("experiement=full", "experiement (did you mean experiment?): the config's keys and groups are ablation, "),
        ("+sed=1", "sed (did you mean seed?): the config's keys and groups are "),
        ("+model.xyz=1", "model.xyz: model.* holds "),
    ],
)
def test_a_key_the_schema_lacks_is_refused_naming_it_the_closest_key_and_the_keys_beside_it(override, message):
    (found,) = unknown_keys([override], GROUPS)
    assert found.startswith(message), found


@pytest.mark.parametrize(
    "override",
    [
        "model.dropout=0",
        "data.sample.classes=3",
        "+trainer.enable_model_summary=false",  # trainer, logger and callbacks take any of Lightning's arguments
        "+callbacks.first_step._target_=recorders.FirstStep",
        "++logger.csv.flush_logs_every_n_steps=10",
        "experiment=full",
        "ablation=glob(*)",
        "data=imagenet",
        "hydra/launcher=slurm",
        "hydra.run.dir=x",
        "model.devices=[cpu,cpu]",
        "optim.lr=0.01,0.02",
    ],
)
def test_keys_the_schema_has_and_the_open_groups_keys_pass(override):
    assert unknown_keys([override], GROUPS) == []


@pytest.mark.parametrize(
    "script",
    ["train.py", pytest.param("eval.py", marks=pytest.mark.slow), pytest.param("prepare.py", marks=pytest.mark.slow)],
)
def test_the_entry_points_refuse_in_seconds_listing_every_bad_value_and_leave_nothing(tmp_path, script):
    overrides = ["optim.lr=-0.01", "optim.lr_factor=-1", "data.pca_lighting=-1", "data.batch_size=0"]
    done = run_script(ROOT / "src" / script, *overrides, cwd=tmp_path, timeout=120, HYDRA_FULL_ERROR="0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 6 and "Traceback" not in done.stderr, done.stderr
    for override in overrides:
        key, _, value = override.partition("=")
        assert any(line.strip().startswith(f"{key}={value}") for line in lines), (override, lines)
    assert list(tmp_path.iterdir()) == [], "no run folder, no data"
