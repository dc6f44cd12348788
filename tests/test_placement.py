"""Section 3.2: the columns talk only where the paper says, and on two devices ("split") they compute what the
grouped layers compute. Small networks (input 67, pool5 1x1; fc6 and fc7 narrow, fast_run.narrow_network): the
sizes do not matter here."""

import pytest
import torch

from alexnet.network.model import AlexNet
from fast_run import SMALL

pytestmark = pytest.mark.usefixtures("narrow")


def test_split_and_grouped_share_one_state_dict():
    grouped, split = AlexNet(input_size=SMALL), AlexNet(input_size=SMALL, placement="split")
    g_sd, s_sd = grouped.state_dict(), split.state_dict()
    assert list(g_sd) == list(s_sd)
    assert all(g_sd[k].shape == s_sd[k].shape for k in g_sd)
    split.load_state_dict(g_sd)
    for key, value in split.state_dict().items():
        torch.testing.assert_close(value, g_sd[key], rtol=0, atol=0)
    # ... and back.
    other = AlexNet(input_size=SMALL)
    other.load_state_dict(split.state_dict())
    for key, value in other.state_dict().items():
        torch.testing.assert_close(value, g_sd[key], rtol=0, atol=0)


def test_split_places_each_column_on_its_own_device():
    # Both devices are the CPU here (the GPU case runs in benchmarks/gpu.sh); every parameter is asserted.
    split = AlexNet(input_size=SMALL, placement="split", devices=["cpu", "cpu"])
    assert split.devices == [torch.device("cpu")] * 2
    for c in (0, 1):
        assert len(list(split.column[c].parameters())) == 14
        assert {p.device for p in split.column[c].parameters()} == {split.devices[c]}
    assert split.fc8.weight.device == split.devices[0]
    assert not any(name.startswith(("conv", "fc6", "fc7")) for name, _ in split.named_parameters())


def test_split_and_grouped_give_the_same_outputs_and_gradients():
    # float64, so that near-ties in max-pooling cannot route a gradient differently.
    torch.manual_seed(0)
    grouped = AlexNet(num_classes=20, dropout=0.0, input_size=SMALL).double()
    split = AlexNet(num_classes=20, dropout=0.0, input_size=SMALL, placement="split", devices=["cpu", "cpu"]).double()
    split.load_state_dict(grouped.state_dict())
    x = torch.randn(3, 3, SMALL, SMALL, dtype=torch.float64) * 50
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


def test_columns_exchange_activations_only_at_conv3_fc6_and_fc7():
    """Changing column 1's half of a layer's input changes column 0's half of its output only where the
    columns talk (conv3, fc6, fc7); conv2, conv4 and conv5 see their own column only."""
    torch.manual_seed(0)
    model = AlexNet(input_size=SMALL, dropout=0.0).double().eval()
    h = model.conv1(torch.randn(2, 3, SMALL, SMALL, dtype=torch.float64) * 50)  # conv1 sees the whole image
    talks = {}
    with torch.no_grad():
        for name in ("conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
            if name == "fc6":
                h = torch.flatten(h, 1)  # column 0's channels first
            perturbed = h.clone()
            perturbed[:, h.shape[1] // 2 :] += 10 * torch.rand_like(perturbed[:, h.shape[1] // 2 :])
            out, out_perturbed = getattr(model, name)(h), getattr(model, name)(perturbed)
            half = out.shape[1] // 2
            assert not torch.equal(out[:, half:], out_perturbed[:, half:]), f"{name}: column 1 sees its own input"
            talks[name] = not torch.equal(out[:, :half], out_perturbed[:, :half])
            h = out
    assert talks == {"conv2": False, "conv3": True, "conv4": False, "conv5": False, "fc6": True, "fc7": True}
