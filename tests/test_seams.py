"""The seams between the parts, each against an independent reference (torchvision, a hand count): what
Lightning hands the model in training and in evaluation, the store's labels beside its pixels, 10-crop
averaging per image, the error rates evaluate() reports, the preparation's resize and crop."""

import lightning as L
import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from alexnet.data.augment import eval_batch, train_batch
from alexnet.data.datamodule import ImageNetDataModule
from alexnet.data.preprocess import load_image
from alexnet.data.store import Store
from alexnet.training.evaluation import evaluate
from alexnet.training.module import AlexNetModule
from fast_run import SMALL

OPTIM = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_factor": 0.1, "patience": 1}


class Recorder(L.LightningModule):
    """Keeps every batch Lightning hands it, with the stage it came in."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.batches = []

    def training_step(self, batch, batch_idx):
        self.batches.append(("train", *batch))
        return self.weight * batch[0].mean()

    def validation_step(self, batch, batch_idx):
        self.batches.append(("val", *batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def cpu_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def datamodule(sample_root, sample_store, **kwargs) -> ImageNetDataModule:
    return ImageNetDataModule(
        str(sample_root), str(sample_store), batch_size=8, eval_batch_size=9, num_workers=0, **kwargs
    )


def stored(sample_store, split):
    """The store's readable images (uint8 (N, S, S, 3)), their labels, and the mean image, read directly."""
    store = Store.open(sample_store)
    labels = store.labels(split)
    slots = np.flatnonzero(labels >= 0)
    images = torch.from_numpy(store.read(split, slots))
    return images, torch.from_numpy(labels[slots].astype(np.int64)), torch.from_numpy(store.mean)


def centred(images: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return (images.float() - mean).permute(0, 3, 1, 2)


def spread(residuals: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N,): the largest range of values within one channel; 0 where each channel is constant."""
    return (residuals.amax(dim=(2, 3)) - residuals.amin(dim=(2, 3))).amax(dim=1)


def test_training_batches_get_lighting_evaluation_batches_do_not_and_labels_follow_their_pixels(
    sample_root, sample_store
):
    # Without random crops and flips a training image is a stored image's centre crop plus one RGB offset
    # (PCA lighting), which only training adds; evaluation, the sanity check's included, must hand over the
    # bare centre crop. Three epochs, so that every readable training image is likely drawn, the ones after
    # the unreadable slot included.
    recorder = Recorder()
    data = datamodule(sample_root, sample_store, crops_flips=False)
    cpu_trainer(max_epochs=3, num_sanity_val_steps=2).fit(recorder, data)
    assert [stage for stage, _, _ in recorder.batches] == ["val"] * 2 + (["train"] * 4 + ["val"] * 2) * 3

    val_images, val_labels, mean = stored(sample_store, "val")
    for start in (0, 6, 12, 18):  # the sanity check, then each epoch's validation
        val = recorder.batches[start : start + 2]
        torch.testing.assert_close(torch.cat([b for _, b, _ in val]), TF.center_crop(centred(val_images, mean), [227]))
        assert torch.equal(torch.cat([y for _, _, y in val]), val_labels)

    train_images, train_labels, mean = stored(sample_store, "train")
    centres = TF.center_crop(centred(train_images, mean), [227, 227])
    # An image minus the centre of the stored image it came from is constant per channel. The stored image is
    # found on every 8th pixel: a full match is a match there too, so one match there is the only full one.
    sparse = centres[:, :, ::8, ::8]
    drawn, offsets = [], []
    for stage, images, labels in recorder.batches:
        for image, label in zip(images, labels, strict=True) if stage == "train" else ():
            (match,) = torch.nonzero(spread(image[None, :, ::8, ::8] - sparse) < 1e-3).flatten().tolist()
            residual = image - centres[match]
            assert spread(residual[None]) < 1e-3
            assert label == train_labels[match]
            drawn.append(match)
            offsets.append(residual[:, 0, 0])
    assert len(offsets) == 3 * 32 and all(offset.abs().max() > 1e-2 for offset in offsets)
    assert set(drawn) == set(range(len(train_labels)))
    assert drawn[:32] != drawn[32:64], "each epoch draws its own order"


def test_ten_crop_evaluation_batches_are_torchvision_ten_crops_of_the_centred_images(sample_root, sample_store):
    recorder = Recorder()
    cpu_trainer().validate(recorder, datamodule(sample_root, sample_store, crop_size=99, val_crops=10), verbose=False)
    images, labels, mean = stored(sample_store, "val")
    expected = torch.stack([torch.stack(TF.ten_crop(image, [99, 99])) for image in centred(images, mean)])
    torch.testing.assert_close(torch.cat([b for _, b, _ in recorder.batches]), expected)
    assert torch.equal(torch.cat([y for _, _, y in recorder.batches]), labels)


def test_the_datamodule_passes_its_crop_flip_and_lighting_keys_to_the_augmentation(sample_root, sample_store):
    images, _, mean = stored(sample_store, "train")
    centre = TF.center_crop(centred(images[:8], mean), [99, 99])
    plain = datamodule(sample_root, sample_store, crop_size=99, crops_flips=False, pca_lighting=0.0)
    plain.setup()
    torch.testing.assert_close(plain.augment(images[:8], training=True), centre)
    lit = datamodule(sample_root, sample_store, crop_size=99, crops_flips=False, pca_lighting=0.1)
    lit.setup()
    residual = lit.augment(images[:8], training=True) - centre
    assert residual[:, :, 0, 0].abs().amax(dim=1).gt(1e-3).all(), "every image gets its lighting offset"
    torch.testing.assert_close(residual, residual[:, :, :1, :1].expand_as(residual))


def test_without_mean_subtraction_evaluation_gets_the_raw_centre_crop(sample_root, sample_store):
    recorder = Recorder()
    cpu_trainer().validate(recorder, datamodule(sample_root, sample_store, crop_size=99, mean_subtraction=False))
    images, _, _ = stored(sample_store, "val")
    expected = TF.center_crop(images.permute(0, 3, 1, 2), [99, 99]).float()
    torch.testing.assert_close(torch.cat([b for _, b, _ in recorder.batches]), expected)


def varied(seed: int = 0, **model) -> AlexNetModule:
    """A small network whose predictions differ from image to image: He-initialised, no dropout (the
    paper's initialisation gives nearly the same output for every input)."""
    torch.manual_seed(seed)
    module = AlexNetModule({"num_classes": 6, "input_size": SMALL, "dropout": 0.0, **model}, OPTIM).eval()
    with torch.no_grad():
        for layer in module.net.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                layer.bias.zero_()
        module.net.fc8.weight.mul_(0.01)  # logits of a few units: no probability rounds to 0 in the loss
    return module


def test_ten_crop_softmax_is_averaged_over_each_images_own_crops():
    module = varied()
    x = torch.randn(3, 10, 3, SMALL, SMALL) * 50
    with torch.no_grad():
        expected = torch.stack([module.net(crops).softmax(dim=1).mean(dim=0) for crops in x])
        torch.testing.assert_close(module(x), expected)


def hand_errors(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 and top-5 error as fractions of images, by sorting each row in plain Python."""
    top1 = top5 = 0
    for row, label in zip(probs.tolist(), labels.tolist(), strict=True):
        ranked = sorted(range(len(row)), key=lambda c: -row[c])
        top1 += label != ranked[0]
        top5 += label not in ranked[:5]
    return top1 / len(labels), top5 / len(labels)


def test_evaluate_reports_the_hand_counted_errors_and_loss_of_one_and_ten_crops(sample_root, sample_store):
    module = varied(seed=2)  # a network whose 1-crop and 10-crop errors differ on the sample's val set
    data = datamodule(sample_root, sample_store, crop_size=SMALL)
    results = evaluate(cpu_trainer(), module, data)
    metrics = cpu_trainer().validate(module, data, verbose=False)[0]

    images, labels, mean = stored(sample_store, "val")
    with torch.no_grad():
        one = torch.stack([module.net(TF.center_crop(x, [SMALL, SMALL])[None])[0] for x in centred(images, mean)])
        ten = torch.stack(
            [module.net(torch.stack(TF.ten_crop(x, [SMALL, SMALL]))).softmax(1).mean(0) for x in centred(images, mean)]
        )
    one = one.softmax(dim=1)
    assert len(set(one.argmax(1).tolist())) > 1, "the network must tell images apart for the test to mean anything"
    top1, top5 = hand_errors(one, labels)
    top1_10, top5_10 = hand_errors(ten, labels)
    assert top1 != top5 and top1 != top1_10
    assert (results["top1_err"], results["top5_err"]) == pytest.approx((top1, top5), abs=1e-6)
    assert (results["top1_err_10crop"], results["top5_err_10crop"]) == pytest.approx((top1_10, top5_10), abs=1e-6)
    assert (metrics["val/top1_err"], metrics["val/top5_err"]) == pytest.approx((top1, top5), abs=1e-6)
    nll = -one[torch.arange(len(labels)), labels].log()
    # val/loss is logged per batch (9 images each) and averaged over the two batches.
    assert metrics["val/loss"] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert data.val_crops == 1, "evaluate() puts the training setting back"


def test_training_logs_the_hand_counted_errors_of_the_batches_it_trained_on():
    module = varied(seed=2)
    module.optim |= {"lr": 1e-9, "max_drops": 3, "decay_biases": False}  # lr: the errors logged are before the step
    images, labels = torch.randn(24, 3, SMALL, SMALL) * 50, torch.arange(24) % 6
    with torch.no_grad():
        top1, top5 = hand_errors(module.net(images).softmax(dim=1), labels)
    assert top1 != top5
    trainer = cpu_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(module, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=12))
    logged = trainer.callback_metrics
    assert (logged["train/top1_err"].item(), logged["train/top5_err"].item()) == pytest.approx((top1, top5), abs=1e-6)


def test_crops_flips_off_takes_the_centre_and_keeps_the_lighting():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 20, 20, 3), dtype=torch.uint8, generator=generator)
    eigval, eigvec = torch.tensor([0.2, 0.02, 0.005]), torch.linalg.qr(torch.randn(3, 3, generator=generator))[0]
    out = train_batch(x, None, eigval, eigvec, crop=13, crops_flips=False, lighting_std=0.1, generator=generator)
    residual = out - TF.center_crop(x.permute(0, 3, 1, 2).float(), [13, 13])
    torch.testing.assert_close(residual, residual[:, :, :1, :1].expand_as(residual))
    assert residual[:, :, 0, 0].abs().amin(dim=1).gt(1e-3).all(), "every image still gets its lighting offset"


def test_random_crops_take_every_offset_and_flip_half_the_images():
    # Pixel (y, x) holds 10 y + x, so a 3x3 crop of a 4x4 image tells its offset and whether it was mirrored.
    count = 4000
    grid = (10 * torch.arange(4)[:, None] + torch.arange(4)[None, :]).to(torch.uint8)
    x = grid[None, :, :, None].expand(count, 4, 4, 3).contiguous()
    eigval, eigvec = torch.ones(3), torch.eye(3)
    out = train_batch(x, None, eigval, eigvec, 3, True, 0.0, torch.Generator().manual_seed(0))
    first_row = out[:, 0, 0].long()  # (count, 3)
    flipped = first_row[:, 0] > first_row[:, 2]
    top, left = first_row.amin(dim=1) // 10, first_row.amin(dim=1) % 10
    # Binomial(4000, 1/2) has a standard deviation of 0.008 in the fraction: 0.04 is five of them.
    assert flipped.float().mean().item() == pytest.approx(0.5, abs=0.04)
    for offsets in (top, left):
        assert torch.bincount(offsets, minlength=2).tolist() == pytest.approx([count / 2] * 2, abs=0.04 * count)


@pytest.mark.parametrize(("size", "crop"), [(34, 27), (36, 27), (256, 227)])
def test_centre_crop_rounds_as_torchvision_does(size, crop):
    # (34 - 27) / 2 = 3.5: torchvision rounds half to even (4), a floor would give 3.
    x = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    expected = TF.center_crop(x.permute(0, 3, 1, 2), [crop, crop]).float()
    torch.testing.assert_close(eval_batch(x, None, crop, ten_crop=False), expected)


@pytest.mark.parametrize("size", [(640, 427), (427, 640), (500, 333)])
def test_preparation_resizes_and_crops_as_torchvision_where_rounding_matters(tmp_path, size):
    # 256 * 640 / 427 = 383.7: torchvision truncates to 383, and (383 - 256) / 2 = 63.5 rounds to 64.
    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    expected = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(256)])(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(load_image(path), expected)
