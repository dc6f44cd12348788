"""What the notebooks draw: fc7 features, conv1 kernels per column, nearest neighbours, a run reloaded."""

import json

import numpy as np
import pytest
import torch

from alexnet.data.augment import eval_batch
from alexnet.data.store import Store
from alexnet.network.model import AlexNet
from alexnet.reporting.figures import (
    TrainedRun,
    centre_crop_outputs,
    colour_share,
    conv1_kernels,
    kernel_grid,
    load_run,
    nearest,
    readable_slots,
)
from alexnet.training.module import AlexNetModule
from fast_run import SMALL

OPTIM = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


def small_module(**model):
    return AlexNetModule({"num_classes": 6, "input_size": SMALL, "dropout": 0.0, **model}, OPTIM).eval()


def test_features_are_what_fc8_sees_in_both_placements():
    torch.manual_seed(0)
    grouped = AlexNet(num_classes=7, input_size=SMALL, dropout=0.0).double()
    split = AlexNet(num_classes=7, input_size=SMALL, dropout=0.0, placement="split", devices=["cpu", "cpu"]).double()
    split.load_state_dict(grouped.state_dict())
    x = torch.randn(2, 3, SMALL, SMALL, dtype=torch.float64) * 50
    fc7 = grouped.features(x)
    assert fc7.shape == (2, 4096)
    torch.testing.assert_close(grouped.fc8(fc7), grouped(x))
    torch.testing.assert_close(split.features(x), fc7)


@pytest.mark.parametrize("placement", ["grouped", "split"])
def test_conv1_kernels_are_the_first_and_second_halves_of_conv1(narrow, placement):
    module = small_module(placement=placement, devices=["cpu", "cpu"])
    weight = module.net.state_dict()["conv1.conv.weight"]
    first, second = conv1_kernels(module)
    assert first.shape == second.shape == (48, 3, 11, 11)
    assert torch.equal(first, weight[:48]) and torch.equal(second, weight[48:])
    (only,) = conv1_kernels(small_module(columns=1))
    assert only.shape == (48, 3, 11, 11)


def test_kernel_grid_tiles_every_kernel_on_one_scale_around_grey():
    kernels = torch.randn(10, 3, 5, 5)
    grid = kernel_grid(kernels, per_row=4, pad=1)
    assert grid.shape == (3 * 6 + 1, 4 * 6 + 1, 3)
    scale = 2 * kernels.abs().max()
    for i in (0, 5, 9):
        top, left = 1 + (i // 4) * 6, 1 + (i % 4) * 6
        expected = (kernels[i] / scale + 0.5).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(grid[top : top + 5, left : left + 5], expected, rtol=1e-6)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    assert np.isclose(grid.min(), 0.0) or np.isclose(grid.max(), 1.0)  # the largest weight reaches an end
    assert (grid[0] == 1).all() and (grid[-6:-1, 13:] == 1).all()  # border and the two unused tiles: white


def test_colour_share_is_0_for_grey_1_for_cancelling_channels_and_two_thirds_for_noise():
    grey = torch.randn(8, 1, 11, 11).expand(8, 3, 11, 11)
    assert colour_share(grey) == pytest.approx(0.0, abs=1e-7)
    cancelling = torch.randn(8, 3, 11, 11)
    cancelling -= cancelling.mean(dim=1, keepdim=True)
    assert colour_share(cancelling) == pytest.approx(1.0)
    assert colour_share(torch.randn(96, 3, 11, 11, generator=torch.Generator().manual_seed(0))) == pytest.approx(
        2 / 3, abs=0.01
    )


def test_nearest_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(50, 16)), rng.normal(size=(4, 16))
    distances, indices = nearest(torch.from_numpy(queries).float(), torch.from_numpy(bank).float(), k=5)
    direct = np.sqrt(((queries[:, None, :] - bank[None, :, :]) ** 2).sum(-1))
    np.testing.assert_array_equal(indices.numpy(), np.argsort(direct, axis=1)[:, :5])
    np.testing.assert_allclose(distances.numpy(), np.sort(direct, axis=1)[:, :5], rtol=1e-5)
    assert nearest(torch.zeros(1, 2), torch.zeros(3, 2), k=5)[1].shape == (1, 3)  # fewer than k to search


def test_centre_crop_outputs_are_the_networks_one_crop_test_outputs(sample_store, narrow):
    store = Store.open(sample_store)
    module = small_module()
    run = TrainedRun(sample_store, {}, module, store)
    slots = readable_slots(store, "train")[[7, 0, 3]]  # any order
    assert len(readable_slots(store, "train")) == store.manifest["splits"]["train"]["images"] == 35  # 1 unreadable
    fc7, probs = centre_crop_outputs(run, "train", slots, batch_size=2)
    images = torch.from_numpy(store.images("train")[slots])
    x = eval_batch(images, torch.from_numpy(store.mean), SMALL, ten_crop=False)
    with torch.no_grad():
        torch.testing.assert_close(fc7, module.net.features(x))
        torch.testing.assert_close(probs, module(x))


def test_load_run_rebuilds_the_evaluated_network_on_one_device(sample_store, tmp_path, narrow):
    trained = small_module(placement="split", devices=["cpu", "cpu"])
    checkpoint = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": dict(trained.hparams), "state_dict": trained.state_dict()}, checkpoint)
    results = {"checkpoint": str(checkpoint), "store_dir": str(sample_store), "top1_err": 0.5}
    (tmp_path / "results.json").write_text(json.dumps(results))
    run = load_run(tmp_path)
    assert run.module.net.placement == "grouped" and not run.module.training
    for key, value in trained.state_dict().items():
        assert torch.equal(run.module.state_dict()[key], value), key
    assert run.store.num_classes == 6


def test_load_run_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"checkpoint": str(tmp_path / "gone.ckpt")}))
    with pytest.raises(FileNotFoundError, match="gone.ckpt"):
        load_run(tmp_path)
