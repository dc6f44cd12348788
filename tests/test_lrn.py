"""Section 3.3: local response normalisation, against a direct loop over the paper's formula."""

import pytest
import torch

from alexnet.network.lrn import LocalResponseNorm


def lrn_by_the_formula(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2)^beta, one channel at a time."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        total = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, i] = a[:, i] / (k + alpha * total) ** beta
    return out


@pytest.mark.parametrize("convention", ["paper", "code"])
@pytest.mark.parametrize("channels", [1, 3, 7, 12])
def test_lrn_equals_the_formula_channel_edges_included(convention, channels):
    torch.manual_seed(channels)
    a = torch.randn(2, channels, 4, 5, dtype=torch.float64) * 30  # large enough for the sum to matter
    alpha = 1e-4 if convention == "paper" else 1e-4 / 5
    expected = lrn_by_the_formula(a, 5, alpha, 0.75, 2.0)
    got = LocalResponseNorm(5, 1e-4, 0.75, 2.0, convention)(a)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, a / 2.0**0.75), "the window sum must change the result"


def test_a_window_of_one_normalises_each_channel_by_itself():
    a = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 30
    torch.testing.assert_close(LocalResponseNorm(1, 1e-4, 0.75, 2.0)(a), lrn_by_the_formula(a, 1, 1e-4, 0.75, 2.0))


@pytest.mark.parametrize("convention", ["paper", "code"])
def test_lrn_gradient_equals_autograd_of_the_formula(convention):
    torch.manual_seed(0)
    a = (torch.randn(2, 9, 3, 4, dtype=torch.float64) * 30).requires_grad_()
    grad_out = torch.randn(2, 9, 3, 4, dtype=torch.float64)
    alpha = 1e-4 if convention == "paper" else 1e-4 / 5
    (expected,) = torch.autograd.grad(lrn_by_the_formula(a, 5, alpha, 0.75, 2.0), a, grad_out)
    (got,) = torch.autograd.grad(LocalResponseNorm(5, 1e-4, 0.75, 2.0, convention)(a), a, grad_out)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("beta", [0.75, 0.6])  # 0.75 takes the square-root path, others a general power
def test_lrn_passes_gradcheck_with_strong_normalisation(beta):
    a = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LocalResponseNorm(3, 0.5, beta, 1.0, "paper"), (a,))
    assert torch.autograd.gradcheck(LocalResponseNorm(5, 0.5, beta, 1.0, "code", groups=2), (a,))


def test_code_convention_equals_torch_local_response_norm():
    torch.manual_seed(1)
    a = torch.randn(4, 16, 6, 6) * 20
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0, "code")(a)
    theirs = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(a)
    torch.testing.assert_close(ours, theirs)
    # The paper as written is torch's with alpha five times larger (docs/paper.md, "Local response normalisation").
    paper = LocalResponseNorm(5, 1e-4, 0.75, 2.0, "paper")(a)
    torch.testing.assert_close(paper, torch.nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0)(a))


def test_lrn_rejects_even_size_and_unknown_convention():
    for size in (4, 0, -1):
        with pytest.raises(ValueError, match="odd"):
            LocalResponseNorm(size)
    with pytest.raises(ValueError, match="lrn_convention"):
        LocalResponseNorm(5, convention="caffe")


def test_two_columns_are_normalised_separately():
    """groups=2: each column's kernel maps see only their own column's neighbours, as on two GPUs."""
    torch.manual_seed(2)
    a = (torch.randn(2, 10, 3, 3, dtype=torch.float64) * 30).requires_grad_()
    grad_out = torch.randn_like(a)
    expected = torch.cat([lrn_by_the_formula(half, 5, 1e-4, 0.75, 2.0) for half in a.chunk(2, dim=1)], dim=1)
    got = LocalResponseNorm(5, 1e-4, 0.75, 2.0, "paper", groups=2)(a)
    torch.testing.assert_close(got, expected)
    (g_expected,) = torch.autograd.grad(expected, a, grad_out)
    (g_got,) = torch.autograd.grad(got, a, grad_out)
    torch.testing.assert_close(g_got, g_expected)
    ungrouped = LocalResponseNorm(5, 1e-4, 0.75, 2.0, "paper")(a)
    assert not torch.allclose(ungrouped[:, 3:7], got[:, 3:7]), "channels by the boundary differ"
    torch.testing.assert_close(ungrouped[:, :3], got[:, :3])


def test_channels_last_input_gives_the_same_result():
    a = torch.randn(2, 12, 5, 5) * 30
    lrn = LocalResponseNorm(5, 1e-4, 0.75, 2.0, "paper", groups=2)
    torch.testing.assert_close(lrn(a.contiguous(memory_format=torch.channels_last)), lrn(a))


def conv1_activations_under_bf16_autocast() -> torch.Tensor:
    """ReLU(conv1) of mean-subtracted images, as the bf16-mixed trainer computes them: bf16, values up to ~50,
    where the window sum moves the result (k + alpha * sum a^2 is about 3 where k is 2)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 96, 11, 4)
    torch.nn.init.normal_(conv.weight, 0.0, 0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return torch.relu(conv(torch.randn(2, 3, 227, 227) * 60))


def test_under_bf16_autocast_lrn_is_the_fp32_result_rounded_to_bf16():
    """cuDNN and cuda-convnet accumulate LRN in fp32; computed in bf16 the error is about 5x that of rounding."""
    a = conv1_activations_under_bf16_autocast().detach().requires_grad_()
    assert a.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = LocalResponseNorm()(a)
    assert out.dtype == torch.bfloat16  # what autocast's next layer expects
    exact = lrn_by_the_formula(a.detach().double(), 5, 1e-4, 0.75, 2.0)
    relative = (out.detach().double() - exact).abs() / exact.abs().clamp_min(1e-3)
    assert relative.max() <= 2**-8  # bf16's rounding: 8 significant bits
    bf16_throughout = LocalResponseNorm()._normalise(a.detach())
    assert ((bf16_throughout.double() - exact).abs() / exact.abs().clamp_min(1e-3)).max() > 2 * 2**-8
    out.float().sum().backward()
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad).all()
