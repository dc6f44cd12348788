"""Error rates as the paper reports them: the plain fraction of images whose label is not in the top k."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


class TopKError(MulticlassAccuracy):
    """1 - micro-averaged top-k accuracy. torchmetrics' default is the macro average (mean over classes),
    which is not the paper's number; micro is. Synchronises across processes like any Metric."""

    def __init__(self, num_classes: int, top_k: int):
        super().__init__(num_classes=num_classes, top_k=min(top_k, num_classes), average="micro")

    def compute(self) -> torch.Tensor:
        return 1.0 - super().compute()
