"""Section 3.5 and Figure 2: the network's shapes, parameter counts, ablation flags and initialisation."""

import pytest
import torch
from torch import nn

from alexnet.model import AlexNet

# PAPER.md, "Parameters (1000 classes), exact".
PAPER_PARAMS = {
    "conv1": 34_944,
    "conv2": 307_456,
    "conv3": 885_120,
    "conv4": 663_936,
    "conv5": 442_624,
    "fc6": 37_752_832,
    "fc7": 16_781_312,
    "fc8": 4_097_000,
}
PAPER_OUTPUTS = {  # (channels, side) after each layer's pooling, Figure 2
    "conv1": (96, 27),
    "conv2": (256, 13),
    "conv3": (384, 13),
    "conv4": (384, 13),
    "conv5": (256, 6),
}


def conv_params(out_c, in_c, k):
    return out_c * in_c * k * k + out_c


def fc_params(out_f, in_f):
    return out_f * in_f + out_f


def per_layer(model: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, p in model.state_dict().items():
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
    return counts


def outputs(model: AlexNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
        for name in model.cross
    ]
    model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_the_paper_network_has_60_965_224_parameters_layer_by_layer():
    model = AlexNet()
    assert per_layer(model) == PAPER_PARAMS
    assert sum(p.numel() for p in model.parameters()) == 60_965_224


def test_the_paper_network_output_sizes():
    model = AlexNet().eval()
    shapes = outputs(model, torch.zeros(1, 3, 227, 227))
    for name, (channels, side) in PAPER_OUTPUTS.items():
        assert shapes[name] == (1, channels, side, side), name
    assert shapes["fc6"] == shapes["fc7"] == (1, 4096)
    assert model(torch.zeros(2, 3, 227, 227)).shape == (2, 1000)


def test_conv1_before_pooling_is_55x55x96():
    model = AlexNet()
    assert model.conv1.conv(torch.zeros(1, 3, 227, 227)).shape == (1, 96, 55, 55)


def test_columns_talk_only_at_conv3_and_the_fully_connected_layers():
    model = AlexNet()
    assert [model.cross[n] for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [True, False, True, False, False]
    assert model.conv2.conv.groups == model.conv4.conv.groups == model.conv5.conv.groups == 2
    assert model.conv1.conv.groups == model.conv3.conv.groups == 1


def test_one_column_net_halves_conv1_to_conv4_and_keeps_conv5_and_fc_full_size():
    model = AlexNet(columns=1)
    expected = {
        "conv1": conv_params(48, 3, 11),
        "conv2": conv_params(128, 48, 5),
        "conv3": conv_params(192, 128, 3),
        "conv4": conv_params(192, 192, 3),
        "conv5": conv_params(256, 192, 3),
        "fc6": fc_params(4096, 256 * 6 * 6),
        "fc7": fc_params(4096, 4096),
        "fc8": fc_params(1000, 4096),
    }
    assert per_layer(model) == expected
    assert all(getattr(model, n).conv.groups == 1 for n in ("conv1", "conv2", "conv3", "conv4", "conv5"))
    assert outputs(model.eval(), torch.zeros(1, 3, 227, 227))["conv5"] == (1, 256, 6, 6)


def test_tanh_replaces_every_relu():
    relu = AlexNet()
    tanh = AlexNet(activation="tanh")
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 7
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert per_layer(relu) == per_layer(tanh)


def test_lrn_flag_removes_only_the_two_lrn_layers():
    with_lrn, without = AlexNet(), AlexNet(lrn=False)
    lrn_layers = [n for n, m in with_lrn.named_modules() if type(m).__name__ == "LocalResponseNorm"]
    assert lrn_layers == ["conv1.lrn", "conv2.lrn"]
    assert not any(type(m).__name__ == "LocalResponseNorm" for m in without.modules())
    assert per_layer(with_lrn) == per_layer(without)
    without.load_state_dict(with_lrn.state_dict())
    x = torch.randn(1, 3, 227, 227) * 50
    with torch.no_grad():
        with_lrn.eval(), without.eval()
        assert not torch.allclose(with_lrn.conv1(x), without.conv1(x))
        # Everything before the LRN is the same.
        torch.testing.assert_close(with_lrn.conv1.conv(x), without.conv1.conv(x))


def test_lrn_normalises_within_each_column():
    assert AlexNet().conv1.lrn.groups == AlexNet().conv2.lrn.groups == 2
    assert AlexNet(columns=1).conv1.lrn.groups == 1


def test_lrn_convention_changes_alpha_only():
    paper, code = AlexNet(), AlexNet(lrn_convention="code")
    assert paper.conv1.lrn.alpha_sum == pytest.approx(1e-4)
    assert code.conv1.lrn.alpha_sum == pytest.approx(1e-4 / 5)
    assert (paper.conv1.lrn.size, paper.conv1.lrn.beta, paper.conv1.lrn.k) == (5, 0.75, 2.0)


def test_non_overlapping_pooling_is_2x2_stride_2_with_the_same_sizes():
    model = AlexNet(overlap_pool=False).eval()
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    assert [(p.kernel_size, p.stride) for p in AlexNet().modules() if isinstance(p, nn.MaxPool2d)] == [(3, 2)] * 3
    shapes = outputs(model, torch.zeros(1, 3, 227, 227))
    assert {n: (s[1], s[2]) for n, s in shapes.items() if n.startswith("conv")} == PAPER_OUTPUTS
    assert sum(p.numel() for p in model.parameters()) == 60_965_224


def test_dropout_is_on_fc6_and_fc7_only_and_zero_turns_it_off():
    model = AlexNet()
    drops = {n: m.p for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert drops == {"fc6.dropout": 0.5, "fc7.dropout": 0.5}
    assert not any(isinstance(m, nn.Dropout) for m in AlexNet(dropout=0.0).modules())
    model.train()
    x = torch.randn(2, 3, 227, 227)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x)), "dropout is active in training"
    model.eval()
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("removed", [3, 4, 5])
def test_depth_ablation_removes_one_middle_conv_layer(removed):
    model = AlexNet(remove_conv=removed).eval()
    names = [n for n in model.cross if n.startswith("conv")]
    assert names == [f"conv{i}" for i in range(1, 6) if i != removed]
    assert not hasattr(model, f"conv{removed}")
    assert model(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)
    full = per_layer(AlexNet())
    ablated = per_layer(model)
    assert f"conv{removed}" not in ablated
    # The layers before the removed one are untouched.
    assert all(ablated[f"conv{i}"] == full[f"conv{i}"] for i in range(1, removed))


def test_num_classes_sets_fc8_only():
    small, full = per_layer(AlexNet(num_classes=10)), per_layer(AlexNet())
    assert small["fc8"] == fc_params(10, 4096)
    assert {k: v for k, v in small.items() if k != "fc8"} == {k: v for k, v in full.items() if k != "fc8"}


def test_crop_size_sets_fc6_inputs():
    model = AlexNet(input_size=224 + 3)
    assert model.fc6.fc.in_features == 9216
    model = AlexNet(input_size=163)
    assert model.fc6.fc.in_features == 256 * 4 * 4
    assert model.eval()(torch.zeros(1, 3, 163, 163)).shape == (1, 1000)


def test_paper_initialisation_statistics():
    torch.manual_seed(0)
    model = AlexNet()
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(model, name)
        layer = layer if isinstance(layer, nn.Linear) else getattr(layer, "conv", None) or layer.fc
        w = layer.weight
        assert abs(w.mean().item()) < 1e-3, name
        assert w.std().item() == pytest.approx(0.01, rel=0.02 if w.numel() > 100_000 else 0.05), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == expected_bias), name


def test_caffe_initialisation_uses_bias_0_1_and_std_0_005_in_fc6_fc7():
    torch.manual_seed(0)
    model = AlexNet(init="caffe")
    assert model.fc6.fc.weight.std().item() == pytest.approx(0.005, rel=0.01)
    assert model.conv1.conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(model.conv2.conv.bias == 0.1) and torch.all(model.conv3.conv.bias == 0)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"activation": "sigmoid"}, "model.activation"),
        ({"columns": 3}, "model.columns"),
        ({"placement": "magic"}, "model.placement"),
        ({"placement": "split", "columns": 1}, "model.columns=2"),
        ({"placement": "split", "devices": ["cpu"]}, "model.devices"),
        ({"remove_conv": 2}, "model.remove_conv"),
        ({"lrn_convention": "caffe"}, "model.lrn_convention"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"input_size": 60}, "crop_size"),
    ],
)
def test_bad_arguments_name_the_config_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        AlexNet(**kwargs)
