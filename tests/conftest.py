import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")  # tests never talk to a wandb server
os.environ.setdefault("WANDB_SILENT", "true")

from alexnet.data.prepare import prepare
from alexnet.data.sample import SampleSpec, make_sample


def pytest_configure(config):
    # mutmut (docs/mutation-testing.md) maps tests to functions in a run marked MUTANT_UNDER_TEST=stats. A script
    # a test starts would inherit the mark and fail looking for mutmut's settings in its own working directory, so
    # the mark stays in this process; when a mutant is under test, scripts inherit it and run the mutant.
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
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


CONF = os.path.join(os.path.dirname(__file__), "..", "conf")


@pytest.fixture
def compose(tmp_path):
    """compose(*overrides) -> the real config, as train.py would get it, writing under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import alexnet.config  # noqa: F401

    def make(*overrides: str, run: str = "run"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(os.path.abspath(CONF), version_base="1.3"):
            cfg = hydra_compose(
                "config",
                overrides=[f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", *overrides],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / run)
        return cfg

    yield make
    GlobalHydra.instance().clear()
