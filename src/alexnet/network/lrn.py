"""Local response normalisation (Section 3.3), both conventions, with a hand-written gradient.

    b_i = a_i / (k + alpha' * sum_{|j-i| <= n//2, 0 <= j < C} a_j^2) ** beta

with alpha' = alpha for the paper's text ("paper") and alpha' = alpha / n for the authors' code and
torch.nn.LocalResponseNorm ("code"). Channels beyond the edges count as zero in both.

torch's LocalResponseNorm builds the window sum with pad + avg_pool3d and lets autograd keep every
temporary. Here the window sum is accumulated in place over channel slices, and backward uses the closed
form (the window is symmetric, so its transpose is itself):

    dL/da = g * s^-beta - 2 * alpha' * beta * a * window(g * a * s^(-beta-1)),   s = k + alpha' * window(a^2)

That needs two fresh activation-sized buffers per direction instead of about six, which is what the
cost is made of on a CPU (page faults on fresh memory) and on a GPU (memory traffic).
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.base.rules import require


def _window_sum(t: torch.Tensor, half: int, groups: int, alpha: float | None = None, k: float = 0.0):
    """Sum of t over channels i-half..i+half of i's own group, truncated at the group's edges, in one new
    buffer; with alpha given, k + alpha * the same sum of t**2 instead."""
    if alpha is not None:  # into a buffer of t's memory format (channels_last stays channels_last), in one pass
        out = torch.addcmul(torch.tensor(k, dtype=t.dtype), t, t, value=alpha, out=torch.empty_like(t))
    else:
        out = t.clone()
    t5, out5 = t.unflatten(1, (groups, -1)), out.unflatten(1, (groups, -1))  # (B, G, C/G, H, W) views
    channels = t5.shape[2]
    for offset in range(1, min(half, channels - 1) + 1):
        lower, upper = t5[:, :, : channels - offset], t5[:, :, offset:]
        if alpha is not None:
            out5[:, :, offset:].addcmul_(lower, lower, value=alpha)
            out5[:, :, : channels - offset].addcmul_(upper, upper, value=alpha)
        else:
            out5[:, :, offset:].add_(lower)
            out5[:, :, : channels - offset].add_(upper)
    return out


def _inverse_power(s: torch.Tensor, beta: float) -> torch.Tensor:
    """s ** -beta. For the paper's beta = 0.75 as s^-1/2 * s^-1/4: square roots are several times cheaper
    than a general power, which would otherwise be the largest single cost of the layer."""
    if beta == 0.75:
        d = torch.rsqrt(s)
        return d.mul_(d.sqrt())
    return s.pow(-beta)


class _LRNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, half: int, groups: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        scale = _window_sum(x, half, groups, alpha=alpha, k=k)  # s
        inv = _inverse_power(scale, beta)  # s^-beta, kept so that backward needs no power
        ctx.save_for_backward(x, scale, inv)
        ctx.constants = (half, groups, alpha, beta)
        return x * inv

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scale, inv = ctx.saved_tensors
        half, groups, alpha, beta = ctx.constants
        grad_inv = grad * inv  # g * s^-beta
        inner = _window_sum(torch.mul(grad_inv, x).div_(scale), half, groups)
        grad_x = grad_inv.addcmul_(x, inner, value=-2.0 * alpha * beta)
        return grad_x, None, None, None, None, None


class LocalResponseNorm(nn.Module):
    """LRN across channels of an (N, C, H, W) tensor; the paper's k=2, n=5, alpha=1e-4, beta=0.75.

    With groups=2 the channels are two columns' kernel maps, each normalised within its own column as on
    the paper's two GPUs: a window never reaches across the boundary between the columns.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        convention: str = "paper",
        groups: int = 1,
    ) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number (the paper's n=5), got {size}")
        require("model", lrn_convention=convention)
        self.size, self.alpha, self.beta, self.k, self.convention = size, alpha, beta, k, convention
        self.groups = groups
        # The coefficient that multiplies the plain sum of squares.
        self.alpha_sum = alpha if convention == "paper" else alpha / size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            # k + alpha * sum(a^2) and its power lose about 2% in bf16 on conv1's activations, 5x the error of
            # rounding the exact result; cuDNN and the authors' code accumulate in fp32, and so does this.
            # The result goes back to x's dtype, as autocast's next layer expects.
            with torch.autocast(x.device.type, enabled=False):
                return self._normalise(x.float()).to(x.dtype)
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return _LRNFunction.apply(x, self.size // 2, self.groups, self.alpha_sum, self.beta, self.k)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"convention={self.convention}, groups={self.groups}"
        )
