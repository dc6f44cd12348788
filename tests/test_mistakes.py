"""The README's commands as a newcomer mistypes them, or runs them where they cannot work: a few lines naming the
key and the valid choices, or the command to run instead; a non-zero exit, no traceback, and no run folder left
behind (a folder that a previous run left anything in is kept)."""

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict, read_write

from alexnet.base.errors import ConfigError
from alexnet.training.rundir import user_errors_reported
from fast_run import ROOT, run_script


def run(tmp_path, script, *overrides, **env):
    """src/<script> as a user runs it, logging and keeping data under tmp_path."""
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    return run_script(ROOT / "src" / script, *paths, *overrides, cwd=tmp_path, timeout=300, HYDRA_FULL_ERROR="0", **env)


def refused(done, code: int) -> str:
    """What the refused command printed, once it is shown to be a few lines with no traceback."""
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 4, done.stderr
    return done.stderr


def left_behind(tmp_path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "logs").rglob("*"))


@pytest.mark.parametrize("override", ["model.dropuot=0", pytest.param("+model.dropuot=0", marks=pytest.mark.slow)])
def test_a_mistyped_key_is_refused_before_hydra_naming_the_closest_key_and_the_groups_keys(tmp_path, override):
    # `+` opens the structured config: Hydra's own advice for model.dropuot=0, and the network refused it later
    said = refused(run(tmp_path, "train.py", override), code=2)
    assert "model.dropuot (did you mean model.dropout?): model.* holds activation, columns, devices, dropout" in said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["trainer=gpu"], pytest.param(["experiment=full"], marks=pytest.mark.slow)])
def test_a_gpu_trainer_without_cuda_is_refused_saying_to_use_trainer_cpu(tmp_path, command):
    said = refused(run(tmp_path, "train.py", *command, CUDA_VISIBLE_DEVICES=""), code=2)
    assert "trainer=gpu (trainer.accelerator=gpu): needs a CUDA GPU" in said and "use trainer=cpu" in said
    assert list(tmp_path.iterdir()) == []


def test_experiment_full_without_imagenet_advises_experiment_smoke_and_leaves_no_run_folder(tmp_path):
    said = refused(run(tmp_path, "train.py", "experiment=full", "trainer=cpu"), code=1)
    assert "data.root=" in said and "run experiment=smoke" in said and "data=sample" not in said
    assert left_behind(tmp_path) == []


@pytest.fixture
def hydra_run(compose, tmp_path):
    """The config of a run whose folder Hydra has just made, as train.py's task function gets it: its .hydra/ and
    an empty train.log in logs/smoke/baseline."""
    cfg = compose()
    folder = tmp_path / "logs" / "smoke" / "baseline"
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(folder)
        cfg.hydra.job.name = "train"
    HydraConfig.instance().set_config(cfg)
    (folder / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (folder / ".hydra" / name).write_text("{}\n")
    (folder / "train.log").touch()
    return cfg, folder


def fail_after(write=None):
    """A task function that writes a file of the run folder (or none), then meets a user error."""

    @user_errors_reported
    def main(cfg):
        if write:
            Path(cfg.paths.output_dir, write).write_text("written\n")
        (Path(HydraConfig.get().runtime.output_dir) / "train.log").write_text("this run's log\n")
        raise ConfigError("model.num_classes=1000, but the store holds 10 classes")

    return main


def test_a_user_error_removes_the_run_folder_hydra_made_for_it_and_the_folders_made_for_that(hydra_run, tmp_path):
    cfg, _ = hydra_run
    with pytest.raises(SystemExit) as exit:
        fail_after()(cfg)
    assert exit.value.code == 2
    assert left_behind(tmp_path) == []  # logs/smoke/ too; logs/ (paths.log_dir) stays


def test_a_run_folder_a_previous_run_left_a_log_in_is_kept(hydra_run):
    cfg, folder = hydra_run
    (folder / "train.log").write_text("a previous run's log\n")
    (folder.parent / "other").mkdir()
    with pytest.raises(SystemExit):
        fail_after()(cfg)
    assert (folder / "train.log").read_text() == "this run's log\n" and (folder.parent / "other").is_dir()


def test_a_run_folder_the_run_wrote_to_before_its_error_is_kept(hydra_run):
    cfg, folder = hydra_run
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    with pytest.raises(SystemExit):
        fail_after(write="wandb_id")(cfg)
    assert (folder / "wandb_id").is_file()


def test_a_run_folder_that_holds_only_the_failed_runs_lock_besides_hydras_files_is_removed(hydra_run, tmp_path):
    cfg, folder = hydra_run
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    with pytest.raises(SystemExit):
        fail_after(write=".lock")(cfg)  # as train() takes it before the checks that need the data
    assert left_behind(tmp_path) == []
