import contextlib
import functools
import io
import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")  # tests never talk to a wandb server
os.environ.setdefault("WANDB_SILENT", "true")

from alexnet.data.prepare import prepare
from alexnet.data.sample import SampleSpec, make_sample
from fast_run import FAST, ROOT, narrow_network


def pytest_configure(config):
    """Under mutmut (docs/mutation-testing.md) only; a plain test run changes nothing here."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    import torch

    torch.set_num_threads(1)  # mutmut runs a worker per core: more threads each would only contend
    # mutmut's fork server handles SIGTERM by SIGKILLing every mutant being tested, and forked processes inherit
    # the handler: a multiprocessing pool that a test closes (SIGTERM to its workers) would kill them all.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # mutmut maps tests to functions in a run marked MUTANT_UNDER_TEST=stats. A script a test starts would inherit
    # the mark and fail looking for mutmut's settings in its own working directory, so the mark stays in this
    # process; when a mutant is under test, scripts inherit it and run the mutant.
    if os.environ["MUTANT_UNDER_TEST"] == "stats":
        from mutmut.mutation import trampoline

        trampoline._mutant_under_test = os.environ.pop("MUTANT_UNDER_TEST")


SMALL = SampleSpec(classes=6, train_per_class=6, val_per_class=3, seed=0)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A small sample dataset in the ILSVRC layout, with one file of each messy kind."""
    return make_sample(tmp_path_factory.mktemp("sample") / "ilsvrc", SMALL)


@pytest.fixture(scope="session")
def sample_store(sample_root, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "store"
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    return store


@pytest.fixture(scope="session")
def jpeg_store(sample_root, tmp_path_factory):
    """The sample set as a JPEG store, prepared by two workers (the pool's path; sample_store takes the other)."""
    store = tmp_path_factory.mktemp("jpeg") / "store"
    prepare(sample_root, store, workers=2, chunk_size=8, progress_bar=False, store_format="jpeg")
    return store


@pytest.fixture(scope="session")
def run_data_dir(tmp_path_factory):
    """paths.data_dir for runs that train on the sample set rather than test its preparation (which
    tests/test_prepare.py, tests/test_layout.py and tests/test_config.py do, each in its own folder): the
    sample and each of its stores are made once, by the first run that needs them."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def narrow():
    """The test's networks are narrow (fast_run.narrow_network)."""
    with narrow_network():
        yield


CONF = ROOT / "conf"


def compose_config(tmp: Path, *overrides: str, run: str = "run", data_dir: Path | None = None):
    """The real config, as train.py would get it, writing under `tmp` (the run in tmp/run); its data under tmp
    too, or in `data_dir` (run_data_dir: the sample and stores that other runs made)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import alexnet.base.config  # noqa: F401

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = hydra_compose(
            "config",
            overrides=[f"paths.data_dir={data_dir or tmp / 'data'}", f"paths.log_dir={tmp / 'logs'}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / run)
    return cfg


@pytest.fixture
def compose(tmp_path):
    """compose(*overrides, run=..., data_dir=...) -> compose_config under tmp_path."""
    from hydra.core.global_hydra import GlobalHydra

    yield functools.partial(compose_config, tmp_path)
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def paper_run(tmp_path_factory, run_data_dir):
    """One finished run of the paper's network (fc6 and fc7 4096 wide) on the sample set, its class count taken
    from the store: 1 epoch, checkpoints, evaluation. Its results and what it printed, for tests that only read
    them (tests/test_provenance.py, tests/test_eval.py)."""
    from hydra.core.global_hydra import GlobalHydra

    from alexnet.training.train import train

    any_classes = [o for o in FAST if not o.startswith("model.num_classes")]
    cfg = compose_config(
        tmp_path_factory.mktemp("paper_run"),
        *any_classes,
        "model.num_classes=null",
        "trainer.max_epochs=1",
        data_dir=run_data_dir,
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = train(cfg)
    GlobalHydra.instance().clear()
    return results, printed.getvalue()


@pytest.fixture(scope="session")
def narrow_run(tmp_path_factory, run_data_dir):
    """The folder holding `run`: one epoch of the narrow network on the sample set, its checkpoints but no final
    evaluation (a finished run would be resumed as done, before any check), for tests that read it or resume it in
    a way that is refused and leaves it as it was. Composed with compose_config(folder, ..., data_dir=run_data_dir),
    a test's config names that run."""
    from hydra.core.global_hydra import GlobalHydra

    from alexnet.training.train import train

    folder = tmp_path_factory.mktemp("narrow_run")
    with narrow_network(), contextlib.redirect_stdout(io.StringIO()):
        train(compose_config(folder, *FAST, "trainer.max_epochs=1", "evaluate=false", data_dir=run_data_dir))
    GlobalHydra.instance().clear()
    return folder
