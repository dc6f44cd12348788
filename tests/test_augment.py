"""Section 4.1: random crops and flips, PCA colour noise, mean subtraction, 10-crop testing."""

import pytest
import torch
import torchvision.transforms.functional as TF

from alexnet.data.augment import eval_batch, pca_lighting_offsets, train_batch

# ImageNet's RGB PCA (pixels in [0, 1]), as fb.resnet.torch ships it: docs/paper.md, "PCA colour augmentation".
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def images(batch=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)


def ten_crops_by_hand(image: torch.Tensor, c: int) -> torch.Tensor:
    """Section 4.1: "the four corner patches and the center patch as well as their horizontal reflections",
    in torchvision's TenCrop order; (H, W, 3) -> (10, 3, c, c). The centre is torchvision's (rounded half to even)."""
    h, w = image.shape[:2]
    top, left = round((h - c) / 2), round((w - c) / 2)
    corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), (top, left)]
    crops = [image[y : y + c, x : x + c] for y, x in corners]
    mirrored = image.flip(1)  # a reflection's corners are the mirrored image's corners
    crops += [mirrored[y : y + c, x : x + c] for y, x in corners]
    return torch.stack(crops).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size,crop", [(32, 27), (33, 27), (256, 227)])
def test_ten_crops_are_the_corners_the_centre_and_their_reflections_per_image(size, crop):
    x = images(3, size)
    mean = torch.rand(size, size, 3) * 255
    got = eval_batch(x, mean, crop=crop, ten_crop=True)
    assert got.shape == (3, 10, 3, crop, crop)
    assert got.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)  # what the network gets
    for b in range(3):
        torch.testing.assert_close(got[b], ten_crops_by_hand(x[b].float() - mean, crop))
        torch.testing.assert_close(
            got[b], torch.stack(TF.ten_crop((x[b].float() - mean).permute(2, 0, 1), [crop, crop]))
        )


@pytest.mark.parametrize("size,crop", [(32, 27), (256, 227), (256, 224), (33, 27)])
def test_centre_crop_equals_torchvision_center_crop(size, crop):
    x = images(2, size)
    got = eval_batch(x, None, crop=crop, ten_crop=False)
    expected = torch.stack([TF.center_crop(img.permute(2, 0, 1), [crop, crop]) for img in x]).float()
    torch.testing.assert_close(got, expected)


def find_window(image: torch.Tensor, crop: torch.Tensor) -> tuple[int, int, bool]:
    """Where in `image` (H, W, 3) the (3, c, c) crop came from, and whether it was flipped."""
    c = crop.shape[-1]
    hwc = crop.permute(1, 2, 0)
    for y in range(image.shape[0] - c + 1):
        for x in range(image.shape[1] - c + 1):
            window = image[y : y + c, x : x + c].float()
            if torch.equal(window, hwc):
                return y, x, False
            if torch.equal(window.flip(1), hwc):
                return y, x, True
    raise AssertionError("the crop is not a window of the image")


def test_random_crops_are_windows_of_the_image_flipped_about_half_the_time():
    x = images(64, 20, seed=1)
    g = torch.Generator().manual_seed(0)
    out = train_batch(x, None, EIGVAL, EIGVEC, crop=16, crops_flips=True, lighting_std=0.0, generator=g)
    assert out.shape == (64, 3, 16, 16)
    found = [find_window(x[b], out[b]) for b in range(64)]
    offsets = {(y, x_) for y, x_, _ in found}
    flips = sum(f for _, _, f in found)
    assert len(offsets) > 10, "offsets vary"
    assert 16 < flips < 48
    assert all(0 <= y <= 4 and 0 <= x_ <= 4 for y, x_, _ in found)


def test_mean_image_is_subtracted_over_the_same_window():
    x = images(16, 20, seed=2)
    same = x[0].expand(16, -1, -1, -1).contiguous()
    mean = x[0].float()
    out = train_batch(
        same,
        mean,
        EIGVAL,
        EIGVEC,
        crop=12,
        crops_flips=True,
        lighting_std=0.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.count_nonzero(out) == 0


def test_no_crops_and_flips_takes_the_centre():
    x = images(3, 20)
    out = train_batch(x, None, EIGVAL, EIGVEC, crop=12, crops_flips=False, lighting_std=0.0)
    torch.testing.assert_close(out, eval_batch(x, None, crop=12, ten_crop=False))


def test_lighting_noise_is_alpha_times_lambda_on_the_0_255_scale():
    n = 40_000
    offsets = pca_lighting_offsets(n, EIGVAL, EIGVEC, std=0.1, generator=torch.Generator().manual_seed(0))
    # Undo the rotation and the scale: alpha_i = (offset / 255 . p_i) / lambda_i must be N(0, 0.1).
    alpha = (offsets / 255.0) @ EIGVEC / EIGVAL
    assert alpha.std(dim=0).tolist() == pytest.approx([0.1, 0.1, 0.1], rel=0.03)
    assert alpha.mean(dim=0).abs().max() < 0.003
    # On ImageNet's PCA the largest component moves a pixel by about 0.1 * 0.2175 * 255 = 5.5 (std), not
    # by 0.1 * sqrt(0.2175) * 255 = 11.9 as cuda-convnet2's alpha * sqrt(lambda) would.
    along_first = (offsets @ EIGVEC[:, 0]).std().item()
    assert along_first == pytest.approx(0.1 * 0.2175 * 255, rel=0.03)


def test_lighting_adds_one_offset_per_image_to_every_pixel():
    x = images(8, 16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = train_batch(x, None, EIGVAL, EIGVEC, crop=12, crops_flips=True, lighting_std=0.0, generator=g1)
    lit = train_batch(x, None, EIGVAL, EIGVEC, crop=12, crops_flips=True, lighting_std=0.1, generator=g2)
    delta = lit - plain  # (B, 3, c, c): constant over pixels, different between images
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-4)
    assert delta[:, :, 0, 0].unique(dim=0).shape[0] == 8


def test_output_is_float_channels_last():
    out = train_batch(images(2, 20), None, EIGVAL, EIGVEC, crop=16, crops_flips=True, lighting_std=0.1)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)


def test_the_same_seed_gives_the_same_batch_and_another_seed_does_not():
    x = images(4, 20)
    a = train_batch(x, None, EIGVAL, EIGVEC, 16, True, 0.1, torch.Generator().manual_seed(3))
    b = train_batch(x, None, EIGVAL, EIGVEC, 16, True, 0.1, torch.Generator().manual_seed(3))
    c = train_batch(x, None, EIGVAL, EIGVEC, 16, True, 0.1, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("with_mean, with_lighting", [(True, True), (False, False), (True, False)])
def test_the_cpu_branch_and_the_accelerator_branch_give_identical_batches(with_mean, with_lighting):
    """The same random draws through the per-image slices (CPU) and the one gather (GPU): the same bits."""
    from alexnet.data import augment

    x = images(16, 24, seed=7)
    mean = torch.rand(24, 24, 3) * 255 if with_mean else None
    draws = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 6, (2, 16), generator=draws)
    flip = torch.rand(16, generator=draws) < 0.5
    lighting = pca_lighting_offsets(16, EIGVAL, EIGVEC, 0.1, draws) if with_lighting else None
    assert 0 < int(flip.sum()) < 16 and len(set(offsets[1].tolist())) > 1
    sliced = augment._sliced_crops(x, mean, offsets, flip, 19, lighting)
    gathered = augment._gathered_crops(x, mean, offsets, flip, 19, lighting)
    assert torch.equal(sliced, gathered)
    # Crops and flips as the slices show them: image 0's window, mirrored iff drawn so.
    top, left = offsets[:, 0].tolist()
    window = x[0, top : top + 19, left : left + 19].float()
    expected = window.flip(1) if flip[0] else window
    if mean is not None:
        reference = mean[top : top + 19, left : left + 19]
        expected = expected - (reference.flip(1) if flip[0] else reference)
    if lighting is not None:
        expected = expected + lighting[0]
    torch.testing.assert_close(gathered[0], expected)
