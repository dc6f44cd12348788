"""What a run is made from, checked before it starts and recorded after: the class count from the store, the
one-screen summary, distinct default stores, and results.json's provenance."""

import json
import subprocess
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
import xxhash

from alexnet.training.results import git_state
from alexnet.training.rundir import LOCK
from alexnet.training.train import train
from fast_run import FAST, ROOT

FAST_ANY_CLASSES = [o for o in FAST if not o.startswith("model.num_classes")]


def test_default_stores_are_distinct_per_source_and_settings(compose):
    variants = [
        [],
        ["data.sample.classes=6"],
        ["data.sample.seed=1"],
        ["data.sample.scale=0.5"],
        ["data.store_format=jpeg"],
        ["data.image_size=128", "data.crop_size=99"],
        ["experiment=full", "data.root=/datasets/a/ilsvrc2012"],
        ["experiment=full", "data.root=/datasets/b/ilsvrc2012"],
    ]
    configs = [compose(*overrides).data for overrides in variants]
    assert len({cfg.store_dir for cfg in configs}) == len(variants)
    samples = [cfg.root for cfg in configs[:4]]
    assert len(set(samples)) == 4, "a sample of another spec is generated in its own folder"
    assert all(Path(cfg.store_dir).parent == Path(configs[0].store_dir).parent for cfg in configs)


def test_a_class_count_that_disagrees_with_the_store_is_refused_before_training(compose, tmp_path, run_data_dir):
    for wrong in (3, 1000):  # fewer would crash at the first label >= 3, more would train a wrong head
        cfg = compose(*FAST_ANY_CLASSES, f"model.num_classes={wrong}", data_dir=run_data_dir)
        with pytest.raises(ValueError, match=rf"model\.num_classes={wrong}, but the store in .* holds 6 classes"):
            train(cfg)
    # no checkpoint, log or result was written: only the lock the run held (and the entry point's error handler
    # removes a run folder left so, tests/test_mistakes.py)
    assert [p.name for p in (tmp_path / "run").iterdir()] == [LOCK]


def test_the_class_count_comes_from_the_store_and_the_run_says_what_it_trains_and_where_from(paper_run):
    results, summary = paper_run  # model.num_classes=null
    run = Path(results["output_dir"])
    assert results["num_classes"] == 6
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["state_dict"]["net.fc8.weight"].shape == (6, 4096)
    assert checkpoint["hyper_parameters"]["model"]["num_classes"] == 6, "eval.py rebuilds the head from here"

    for line in (
        "experiment smoke",
        "data       ",
        "'classes': 6",
        "classes    6\n",
        "images     35 train (1 skipped), 18 val\n",
        "epochs     1\n",
        "batch      8\n",
        "lr         0.001 (paper rule",
        "device     cpu x 1",
        "precision  32-true\n",
    ):
        assert line in summary, line

    provenance = json.loads((run / "results.json").read_text())["provenance"]
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert provenance["git"]["commit"] == head.stdout.strip() and isinstance(provenance["git"]["dirty"], bool)
    store = Path(results["store_dir"])
    assert provenance["store"]["dir"] == str(store)
    assert provenance["store"]["manifest_xxh3"] == xxhash.xxh3_128_hexdigest((store / "manifest.json").read_bytes())
    assert provenance["store"]["source"]["sample"]["classes"] == 6
    versions = provenance["packages"]
    assert torch.__version__.startswith(versions["torch"])  # the build tag (+cu...) is not in the package version
    assert (versions["lightning"], versions["numpy"]) == (lightning.__version__, np.__version__)
    assert provenance["device"].startswith("cpu (")


def test_git_state_is_the_commit_and_whether_a_tracked_file_changed(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", tmp_path, *args], check=True, capture_output=True)

    assert git_state(tmp_path) == {"commit": None, "dirty": None}, "not a checkout: nothing claimed"
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", tmp_path, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "notes.txt").write_text("untracked files do not change what ran")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}
