"""Section 3.2: the two columns on two devices ("split") compute what the grouped layers compute."""

import torch

from alexnet.model import AlexNet


def test_split_and_grouped_share_one_state_dict():
    grouped, split = AlexNet(), AlexNet(placement="split")
    g_sd, s_sd = grouped.state_dict(), split.state_dict()
    assert list(g_sd) == list(s_sd)
    assert all(g_sd[k].shape == s_sd[k].shape for k in g_sd)
    split.load_state_dict(g_sd)
    for key, value in split.state_dict().items():
        torch.testing.assert_close(value, g_sd[key], rtol=0, atol=0)
    # ... and back.
    other = AlexNet()
    other.load_state_dict(split.state_dict())
    for key, value in other.state_dict().items():
        torch.testing.assert_close(value, g_sd[key], rtol=0, atol=0)


def test_split_places_each_column_on_its_own_device():
    # Both devices are the CPU here (the GPU case runs in benchmarks/gpu.sh); every parameter is asserted.
    split = AlexNet(placement="split", devices=["cpu", "cpu"])
    assert split.devices == [torch.device("cpu")] * 2
    for c in (0, 1):
        assert len(list(split.column[c].parameters())) == 14
        assert {p.device for p in split.column[c].parameters()} == {split.devices[c]}
    assert split.fc8.weight.device == split.devices[0]
    assert not any(name.startswith(("conv", "fc6", "fc7")) for name, _ in split.named_parameters())


def test_split_and_grouped_give_the_same_outputs_and_gradients():
    # float64, so that near-ties in max-pooling cannot route a gradient differently.
    torch.manual_seed(0)
    grouped = AlexNet(num_classes=20, dropout=0.0).double()
    split = AlexNet(num_classes=20, dropout=0.0, placement="split", devices=["cpu", "cpu"]).double()
    split.load_state_dict(grouped.state_dict())
    x = torch.randn(3, 3, 227, 227, dtype=torch.float64) * 50
    target = torch.tensor([1, 5, 19])
    losses = []
    for model in (grouped, split):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-12
    grad_grouped = {n: p.grad for n, p in grouped.named_parameters()}
    grad_split = {n: p.grad for n, p in split.named_parameters()}
    for name, grad in grad_grouped.items():
        if name.startswith("fc8"):
            merged = grad_split[name]
        else:
            merged = torch.cat([grad_split[f"column.0.{name}"], grad_split[f"column.1.{name}"]])
        torch.testing.assert_close(merged, grad, rtol=1e-9, atol=1e-12, msg=name)


def test_split_one_column_input_never_reaches_the_other_at_conv2():
    """Zeroing column 1's conv1 output cannot change column 0's conv2 output: conv2 is column-local."""
    torch.manual_seed(0)
    split = AlexNet(placement="split").eval()
    x = torch.randn(1, 3, 227, 227) * 50
    h0, h1 = split.column[0]["conv1"](x), split.column[1]["conv1"](x)
    torch.testing.assert_close(split.column[0]["conv2"](h0), split.column[0]["conv2"](h0 + 0 * h1))
    assert split.column[0]["conv3"].conv.in_channels == 256  # conv3 sees both columns
