"""The paper's error rates: the fraction of images whose label is not among the top k, counted by hand."""

import pytest
import torch

from alexnet.training.metrics import TopKError


def hand_count(logits: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[float, float]:
    """(micro, macro) top-k error in plain Python: micro over images (the paper's), macro over classes."""
    misses = []
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        ranked = sorted(range(len(row)), key=lambda c: -row[c])
        misses.append(label not in ranked[:k])
    per_class = {}
    for miss, label in zip(misses, labels.tolist(), strict=True):
        per_class.setdefault(label, []).append(miss)
    macro = sum(sum(m) / len(m) for m in per_class.values()) / len(per_class)
    return sum(misses) / len(misses), macro


def test_top1_and_top5_error_are_micro_averaged_over_images():
    # Unbalanced on purpose: five images of class 0, one each of classes 1 and 2, so that the mean over
    # classes (torchmetrics' default) and the mean over images differ.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 8, generator=generator)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 2])
    logits[:4, 0] += 10  # four of class 0 right; the fifth and classes 1, 2 left to chance
    logits[4, 0] -= 10
    logits[5, 1] -= 10
    logits[6, 2] -= 10
    for k in (1, 5):
        micro, macro = hand_count(logits, labels, k)
        assert micro != macro, "the batch must tell micro from macro"
        metric = TopKError(8, k)
        metric.update(logits, labels)
        assert metric.compute().item() == pytest.approx(micro, abs=1e-6), k


def test_error_accumulates_over_batches_as_a_fraction_of_all_images():
    metric = TopKError(4, 1)
    wrong = torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 2)  # two images of class 0, both predicted 1
    right = torch.eye(4)[[0, 1, 2, 3, 0, 1]]  # six images, all right
    metric.update(wrong, torch.tensor([0, 0]))
    metric.update(right, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert metric.compute().item() == pytest.approx(2 / 8, abs=1e-6)  # not the mean of the batches' 1.0 and 0.0


def test_top5_of_fewer_than_five_classes_counts_every_image_right():
    metric = TopKError(3, 5)
    metric.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert metric.compute().item() == 0.0
