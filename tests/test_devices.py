"""What a GPU user runs, on the CPU here and on CUDA where there is one: bf16-mixed with channels_last,
torch.compile, a JPEG store decoded on the device (nvJPEG), split placement, DDP with one device, resume.

`pytest -m gpu` selects the CUDA cases (benchmarks/gpu.sh runs them first on a GPU machine); without CUDA
they are reported as skipped, with the reason.
"""

import json
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from alexnet.data.datamodule import ImageNetDataModule, decode_batch
from alexnet.data.prepare import prepare
from alexnet.data.store import Store
from alexnet.network.model import AlexNet
from alexnet.reporting.figures import load_run
from alexnet.training import train as training
from alexnet.training.evaluation import evaluate_checkpoints
from alexnet.training.module import AlexNetModule, module_from_checkpoint
from alexnet.training.train import train
from fast_run import FAST, SMALL

NO_CUDA = "needs a CUDA GPU: run `pytest -m gpu` on a GPU machine (benchmarks/gpu.sh does, before its benchmarks)"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]
ON_CUDA = pytest.param("cuda", id="cuda", marks=GPU)
# The gpu trainer's fast path (bf16 autocast, channels_last) on either device; CUDA adds cuDNN autotuning.
FAST_PATH = {
    "cpu": ["trainer.precision=bf16-mixed", "runtime.channels_last=true"],
    "cuda": ["trainer=gpu"],
}


def network_keys() -> set[str]:
    return {f"net.{key}" for key in AlexNet(num_classes=6, input_size=SMALL).state_dict()}


def last_checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def check_checkpoint_is_read_everywhere(compose, tmp_path: Path, results: dict, overrides: list[str], data_dir) -> None:
    """The run's evaluated checkpoint holds each weight once, under the plain keys, and eval.py, the figures'
    loader and AlexNet.from_checkpoint all read it and compute the same network."""
    best = results["checkpoint"]
    saved = torch.load(best, map_location="cpu", weights_only=False)
    assert set(saved["state_dict"]) == network_keys()
    cfg = compose(*FAST, *overrides, f"ckpt_path={best}", run="eval", data_dir=data_dir)
    started = time.monotonic()
    evaluated = evaluate_checkpoints(cfg)
    took = time.monotonic() - started
    # The same checkpoint on the same images: eval.py's numbers are the run's own (one image of 18 apart at
    # most where the device's kernels reorder sums near a tie).
    for key in ("top1_err", "top5_err", "top1_err_10crop", "top5_err_10crop"):
        assert evaluated[key] == pytest.approx(results[key], abs=1.01 / 18), key
    assert evaluated["checkpoints"] == [best]  # what it evaluated, and how long it took
    assert took - 0.5 <= evaluated["wall_time_s"] <= took + 0.05
    run = load_run(tmp_path / "run", device="cpu")
    net = AlexNet.from_checkpoint(best)
    assert net.placement == "grouped" and not net.training
    x = torch.randn(2, 3, SMALL, SMALL) * 50
    with torch.no_grad():
        torch.testing.assert_close(run.module.net(x), net(x))
        for key, value in net.state_dict().items():
            assert torch.equal(value, saved["state_dict"][f"net.{key}"]), key


@pytest.mark.parametrize("device", ["cpu", ON_CUDA])
def test_the_fast_path_trains_evaluates_and_its_checkpoint_is_read_everywhere(
    compose, tmp_path, run_data_dir, narrow, device
):
    overrides = FAST_PATH[device]
    results = train(compose(*FAST, *overrides, "trainer.max_epochs=2", data_dir=run_data_dir))
    assert results["steps"] == 2 * (35 // 8) and results["epochs"] == 2
    assert 0.0 <= results["top1_err_10crop"] <= 1.0 and np.isfinite(results["top1_err"])
    check_checkpoint_is_read_everywhere(compose, tmp_path, results, overrides, run_data_dir)


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow), ON_CUDA])
def test_a_compiled_run_has_plain_checkpoint_keys_and_is_read_everywhere(compose, tmp_path, run_data_dir, device):
    overrides = [*FAST_PATH[device], "runtime.compile=true"]
    results = train(compose(*FAST, *overrides, "trainer.max_epochs=1", data_dir=run_data_dir))
    assert set(last_checkpoint(tmp_path / "run")["state_dict"]) == network_keys()
    check_checkpoint_is_read_everywhere(compose, tmp_path, results, overrides, run_data_dir)


def test_a_compiled_module_is_compiled_in_place_and_saves_the_plain_keys(narrow):
    model = {"num_classes": 6, "input_size": SMALL, "dropout": 0.0}
    optim = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_factor": 0.1}
    plain, compiled = AlexNetModule(model, optim), AlexNetModule(model, optim, compile=True)
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert not any("_orig_mod" in key for key in compiled.state_dict())
    compiled.load_state_dict(plain.state_dict())
    assert compiled.net._compiled_call_impl is not None  # compiled in place: the module's own call is compiled


def test_under_bf16_autocast_the_network_runs_in_bf16_and_the_probabilities_are_fp32(narrow):
    torch.manual_seed(0)
    model = {"num_classes": 6, "input_size": SMALL, "init": "caffe"}
    module = AlexNetModule(model, {"rule": "paper", "lr": 0.01}).eval()
    crops = torch.randn(2, 10, 3, SMALL, SMALL) * 50
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = module.net(crops.flatten(0, 1))
        probs = module(crops)
    assert logits.dtype == torch.bfloat16 and probs.dtype == torch.float32
    expected = logits.float().softmax(dim=1).view(2, 10, 6).mean(dim=1)  # softmax and average in fp32
    torch.testing.assert_close(probs, expected, rtol=0, atol=0)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2), rtol=0, atol=1e-6)


def test_an_older_checkpoint_loads_as_it_was_trained(tmp_path, narrow):
    """Older checkpoints hold each weight under a second name too, and were trained with nn.Dropout's
    scaling before model.dropout_scaling existed (its hyperparameters do not name it)."""
    module = AlexNetModule({"num_classes": 6, "input_size": SMALL, "dropout_scaling": "inverted"}, {"rule": "paper"})
    state = module.state_dict()
    second_names = {key.replace("net.", "step_net._orig_mod.", 1): value for key, value in state.items()}
    hparams = dict(module.hparams)
    hparams["model"] = {key: value for key, value in hparams["model"].items() if key != "dropout_scaling"}
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": {**state, **second_names}}, path)
    net = AlexNet.from_checkpoint(path)
    loaded = module_from_checkpoint(torch.load(path, weights_only=False)).eval()
    x = torch.randn(2, 3, SMALL, SMALL) * 50
    with torch.no_grad():
        torch.testing.assert_close(net(x), module.eval().net(x))  # inverted: no x0.5 at test time
        torch.testing.assert_close(loaded.net(x), module.net(x))
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key.removeprefix("net.")], value)
        assert torch.equal(loaded.state_dict()[key], value)
    resumed = {"state_dict": {**state, **second_names}}
    module.on_load_checkpoint(resumed)  # what Lightning calls before it loads the weights to resume a run
    assert resumed["state_dict"].keys() == state.keys()


@pytest.mark.parametrize("channels_last", [False, True])
def test_runtime_channels_last_puts_every_conv_kernel_in_that_memory_format(narrow, channels_last):
    module = AlexNetModule({"num_classes": 6, "input_size": SMALL}, {"rule": "paper"}, channels_last=channels_last)
    kernels = [p for p in module.parameters() if p.ndim == 4]
    assert len(kernels) == 5
    assert [p.is_contiguous(memory_format=torch.channels_last) for p in kernels] == [channels_last] * 5


@pytest.mark.parametrize("device", ["cpu", ON_CUDA])
def test_ddp_with_one_device_trains_and_evaluates(compose, run_data_dir, narrow, device):
    overrides = ["trainer=ddp", "trainer.devices=1"]
    if device == "cpu":
        overrides += ["trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.benchmark=false"]
    environment = dict(os.environ)
    try:
        results = train(compose(*FAST, *overrides, "trainer.max_epochs=1", data_dir=run_data_dir))
    finally:  # DDP in this process leaves its process group and MASTER_PORT behind, for later tests to trip on
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environment)
    assert results["steps"] == 35 // 8 and 0.0 <= results["top1_err_10crop"] <= 1.0


@pytest.mark.parametrize("device", [ON_CUDA])
def test_a_jpeg_store_is_decoded_on_the_device_to_what_the_cpu_decodes(sample_root, tmp_path, device):
    store_dir = tmp_path / "jpeg_store"
    prepare(sample_root, store_dir, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    datamodule = ImageNetDataModule(str(sample_root), str(store_dir), "jpeg", batch_size=8, num_workers=0)
    datamodule.setup()
    encoded, _ = next(iter(datamodule.val_dataloader()))
    on_device = decode_batch(encoded, torch.device(device))
    assert on_device.device.type == device and on_device.dtype == torch.uint8
    slots = np.flatnonzero(Store.open(store_dir).labels("val") >= 0)[: len(encoded)]
    on_cpu = torch.from_numpy(Store.open(store_dir).read("val", slots))
    # Decoders may differ in their IDCT and chroma upsampling by a few levels, never by content.
    assert (on_device.cpu().int() - on_cpu.int()).abs().float().mean() < 2


@pytest.mark.parametrize("device", [ON_CUDA])
def test_a_jpeg_store_trains_on_the_gpu(compose, tmp_path, device):
    results = train(compose(*FAST, *FAST_PATH[device], "data.store_format=jpeg", "trainer.max_epochs=1"))
    assert results["steps"] == 35 // 8 and 0.0 <= results["top1_err_10crop"] <= 1.0


@pytest.mark.parametrize("device", [ON_CUDA])
def test_split_placement_on_one_gpu_equals_grouped_on_the_same_weights(device):
    torch.manual_seed(0)
    grouped = AlexNet(num_classes=7, input_size=163, dropout=0.0).double().to(device)
    split = AlexNet(
        num_classes=7, input_size=163, dropout=0.0, placement="split", devices=[f"{device}:0", f"{device}:0"]
    ).double()
    split.load_state_dict(grouped.state_dict())
    split.place()
    x = torch.randn(3, 3, 163, 163, dtype=torch.float64, device=device) * 50
    torch.testing.assert_close(split(x), grouped(x))
    split(x).square().sum().backward()
    grouped(x).square().sum().backward()
    split_grads = {name: p.grad for name, p in split.named_parameters()}
    for name, p in grouped.named_parameters():  # a column layer's gradient is its two halves, in order
        if f"column.0.{name}" in split_grads:
            halves = [split_grads[f"column.{c}.{name}"].to(p.device) for c in range(2)]
            torch.testing.assert_close(torch.cat(halves), p.grad, msg=name)
        else:
            torch.testing.assert_close(split_grads[name], p.grad, msg=name)


@pytest.mark.parametrize("device", [ON_CUDA])
def test_the_two_gpu_trainer_runs_with_both_columns_on_one_gpu(compose, tmp_path, device):
    results = train(compose(*FAST, "trainer=two_gpu", "model.devices=[cuda:0,cuda:0]", "trainer.max_epochs=1"))
    assert results["steps"] == 35 // 8 and 0.0 <= results["top1_err_10crop"] <= 1.0
    assert last_checkpoint(tmp_path / "run")["state_dict"]["net.conv2.conv.weight"].shape == (256, 48, 5, 5)


class StartStep(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step


@pytest.mark.parametrize("device", [ON_CUDA])
def test_a_gpu_run_resumes_from_its_last_checkpoint(compose, tmp_path, monkeypatch, device):
    first = train(compose(*FAST, *FAST_PATH[device], "trainer.max_epochs=1", "evaluate=false"))
    assert first["steps"] == 35 // 8
    recorder, real = StartStep(), training.instantiate

    def with_recorder(config, **kwargs):  # the trainer gets the recorder among its callbacks
        if "callbacks" in kwargs and kwargs.get("logger") is not None:
            kwargs["callbacks"] = [*kwargs["callbacks"], recorder]
        return real(config, **kwargs)

    monkeypatch.setattr(training, "instantiate", with_recorder)
    resumed = train(compose(*FAST, *FAST_PATH[device], "trainer.max_epochs=2", "ckpt_path=last"))
    assert recorder.step == 35 // 8  # started from the checkpoint, not from scratch
    assert resumed["steps"] == 2 * (35 // 8) and resumed["epochs"] == 2
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 2 * (35 // 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cifar_lives_on_the_gpu_and_trains_there(tmp_path):
    """Figure 1's data is moved to the training device once, in setup: every batch is already there."""
    from alexnet.data.cifar_datamodule import CIFAR10DataModule
    from alexnet.training.classifier import ClassifierModule
    from cifar_files import write_python_release

    root = write_python_release(tmp_path, per_batch=64)
    datamodule = CIFAR10DataModule(str(root), str(tmp_path / "store"), batch_size=32)
    net = {"_target_": "alexnet.network.cifar.CifarConvNet", "activation": "tanh", "num_classes": 10}
    module = ClassifierModule(net, lr=0.01, momentum=0.9, channels_last=True)
    trainer = L.Trainer(accelerator="gpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False)
    trainer.fit(module, datamodule)
    assert {t.device.type for t in datamodule.tensors.values()} == {"cuda"}
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.is_cuda and trainer.global_step == 10
