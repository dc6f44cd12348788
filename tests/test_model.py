"""Section 3.5 and Figure 2: the network's shapes, parameter counts, ablation flags and initialisation.

Shapes and counts are read from networks on the meta device (no memory, no time); what the layers compute is
checked on small real networks (input 67, pool5 1x1), where the input size does not matter."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.network.model import AlexNet
from fast_run import ROOT, SMALL, run_script

# docs/paper.md, "Parameter counts".
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
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def meta(**kwargs) -> AlexNet:
    with torch.device("meta"):
        return AlexNet(**kwargs).eval()


def conv_params(out_c, in_c, k):
    return out_c * in_c * k * k + out_c


def fc_params(out_f, in_f):
    return out_f * in_f + out_f


def per_layer(model: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, p in model.state_dict().items():
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
    return counts


def run(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.device("meta"):  # the LRN makes its constant k on the default device
        return layer(x)


def outputs(model: AlexNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
        for name in model.layer_names
    ]
    run(model, x)
    for h in hooks:
        h.remove()
    return shapes


def image(side=227, batch=1):
    return torch.zeros(batch, 3, side, side, device="meta")


def test_the_paper_network_has_60_965_224_parameters_layer_by_layer():
    model = meta()
    assert per_layer(model) == PAPER_PARAMS
    assert sum(p.numel() for p in model.parameters()) == 60_965_224


def test_the_paper_network_output_sizes():
    model = meta()
    shapes = outputs(model, image())
    for name, (channels, side) in PAPER_OUTPUTS.items():
        assert shapes[name] == (1, channels, side, side), name
    assert shapes["fc6"] == shapes["fc7"] == (1, 4096)
    assert run(model, image(batch=2)).shape == (2, 1000)
    assert run(model.conv1.conv, image()).shape == (1, 96, 55, 55)  # conv1 before pooling


def test_one_column_net_halves_conv1_to_conv4_and_keeps_conv5_and_fc_full_size():
    model = meta(columns=1)
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
    assert outputs(model, image())["conv5"] == (1, 256, 6, 6)


def test_tanh_replaces_every_relu():
    relu, tanh = meta(), meta(activation="tanh")
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 7
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert per_layer(relu) == per_layer(tanh)


# What each model key may change, layer by layer, against the paper's network
# (docs/paper.md, "What each feature is worth").
FLAGS = {
    "activation=tanh": ({"activation": "tanh"}, {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"}),
    "lrn=false": ({"lrn": False}, {"conv1", "conv2"}),
    "lrn_convention=code": ({"lrn_convention": "code"}, {"conv1", "conv2"}),
    "overlap_pool=false": ({"overlap_pool": False}, {"conv1", "conv2", "conv5"}),
    "dropout=0": ({"dropout": 0.0}, {"fc6", "fc7"}),
    "dropout_scaling=inverted": ({"dropout_scaling": "inverted"}, {"fc6", "fc7"}),
    # conv5 keeps its 256 kernels but now sees one column of 192 maps instead of two of 192.
    "columns=1": ({"columns": 1}, {"conv1", "conv2", "conv3", "conv4", "conv5"}),
    "remove_conv=3": ({"remove_conv": 3}, {"conv3", "conv4"}),  # conv4 then sees conv2's 256 maps
    "remove_conv=4": ({"remove_conv": 4}, {"conv4"}),  # conv5 sees conv3's 384 maps, as many as conv4's
    "remove_conv=5": ({"remove_conv": 5}, {"conv5", "conv4", "fc6"}),  # conv4 pools, fc6 sees 384 maps
    "num_classes=10": ({"num_classes": 10}, {"fc8"}),
    "init=caffe": ({"init": "caffe"}, set()),
}


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_each_model_key_changes_only_the_layers_it_names(flag):
    kwargs, changed = FLAGS[flag]
    baseline, varied = meta(), meta(**kwargs)
    differs = {name for name in LAYERS if repr(getattr(baseline, name, None)) != repr(getattr(varied, name, None))}
    assert differs == changed


def relu_conv(stage, x):
    return F.relu(stage.conv(x))


def per_column(lrn: nn.Module, a: torch.Tensor, columns: int) -> torch.Tensor:
    return torch.cat([lrn(part) for part in a.chunk(columns, dim=1)], dim=1)


@pytest.mark.parametrize(
    ("convention", "columns", "alpha"),
    [("paper", 2, 5e-4), ("code", 2, 1e-4), ("paper", 1, 5e-4)],  # docs/paper.md, "Local response normalisation"
)
def test_layers_1_and_2_are_conv_relu_lrn_within_each_column_then_overlapping_max_pool(convention, columns, alpha):
    torch.manual_seed(0)
    model = AlexNet(input_size=SMALL, lrn_convention=convention, columns=columns).eval()
    reference = nn.LocalResponseNorm(5, alpha, 0.75, 2.0)  # torch's alpha is divided by n = 5
    x = torch.randn(2, 3, SMALL, SMALL) * 80  # large enough for the window sum to matter
    with torch.no_grad():
        for stage in (model.conv1, model.conv2):
            expected = F.max_pool2d(per_column(reference, relu_conv(stage, x), columns), 3, 2)
            torch.testing.assert_close(stage(x), expected)
            assert not torch.allclose(stage(x), F.max_pool2d(relu_conv(stage, x) / 2**0.75, 3, 2), rtol=1e-3)
            x = stage(x)


def test_lrn_flag_removes_only_the_two_lrn_layers():
    torch.manual_seed(0)
    with_lrn, without = AlexNet(input_size=SMALL).eval(), AlexNet(input_size=SMALL, lrn=False).eval()
    lrn_layers = [n for n, m in with_lrn.named_modules() if type(m).__name__ == "LocalResponseNorm"]
    assert lrn_layers == ["conv1.lrn", "conv2.lrn"]
    assert not any(type(m).__name__ == "LocalResponseNorm" for m in without.modules())
    without.load_state_dict(with_lrn.state_dict())
    x = torch.randn(1, 3, SMALL, SMALL) * 80
    with torch.no_grad():
        torch.testing.assert_close(without.conv1(x), F.max_pool2d(relu_conv(with_lrn.conv1, x), 3, 2))
        assert not torch.allclose(with_lrn.conv1(x), without.conv1(x))


def test_non_overlapping_pooling_is_2x2_stride_2_with_the_same_sizes():
    model = meta(overlap_pool=False)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    assert [(p.kernel_size, p.stride) for p in meta().modules() if isinstance(p, nn.MaxPool2d)] == [(3, 2)] * 3
    shapes = outputs(model, image())
    assert {n: (s[1], s[2]) for n, s in shapes.items() if n.startswith("conv")} == PAPER_OUTPUTS
    assert sum(p.numel() for p in model.parameters()) == 60_965_224


@pytest.mark.parametrize("scaling", ["paper", "inverted"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_dropout_zeroes_the_outputs_of_fc6_and_fc7_and_scales_as_configured(activation, scaling):
    """Section 4.2: "setting to zero the output of each hidden neuron with probability 0.5", after the
    nonlinearity of fc6 and fc7 (tanh tells "after" from "before"; ReLU would not). "paper": kept outputs
    unchanged in training, every output x0.5 at test time; "inverted" (nn.Dropout): kept outputs x2 in
    training, nothing at test time."""
    torch.manual_seed(0)
    model = AlexNet(input_size=SMALL, num_classes=10, activation=activation, dropout_scaling=scaling)
    act = torch.tanh if activation == "tanh" else F.relu
    train_scale, test_scale = (1.0, 0.5) if scaling == "paper" else (2.0, 1.0)
    x = torch.randn(4, 3, SMALL, SMALL) * 50
    with torch.no_grad():
        h = torch.flatten(model.conv5(model.conv4(model.conv3(model.conv2(model.conv1(x))))), 1)
        torch.manual_seed(1)  # the masks, drawn in the order the network draws them: fc6's, then fc7's
        keep6, keep7 = (F.dropout(torch.ones(4, 4096), 0.5, training=True) > 0 for _ in range(2))
        h6 = act(model.fc6.fc(h))
        h7 = act(model.fc7.fc(h6 * keep6 * train_scale))
        torch.manual_seed(1)
        torch.testing.assert_close(model.train()(x), model.fc8(h7 * keep7 * train_scale))
        expected = model.fc8(act(model.fc7.fc(h6 * test_scale)) * test_scale)
        torch.testing.assert_close(model.eval()(x), expected)
    drops = {n: m.p for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert drops == {"fc6.dropout": 0.5, "fc7.dropout": 0.5}
    assert not any(isinstance(m, nn.Dropout) for m in meta(dropout=0.0).modules())


@pytest.mark.parametrize("removed", [3, 4, 5])
def test_depth_ablation_removes_one_middle_conv_layer(removed):
    model = meta(remove_conv=removed)
    names = [n for n in model.layer_names if n.startswith("conv")]
    assert names == [f"conv{i}" for i in range(1, 6) if i != removed]
    assert not hasattr(model, f"conv{removed}")
    assert run(model, image()).shape == (1, 1000)
    ablated = per_layer(model)
    assert f"conv{removed}" not in ablated
    # The layers before the removed one are untouched.
    assert all(ablated[f"conv{i}"] == PAPER_PARAMS[f"conv{i}"] for i in range(1, removed))


def test_num_classes_sets_fc8_only():
    small = per_layer(meta(num_classes=10))
    assert small["fc8"] == fc_params(10, 4096)
    assert {k: v for k, v in small.items() if k != "fc8"} == {k: v for k, v in PAPER_PARAMS.items() if k != "fc8"}


def test_crop_size_sets_fc6_inputs():
    assert meta(input_size=224 + 3).fc6.fc.in_features == 9216
    model = meta(input_size=163)
    assert model.fc6.fc.in_features == 256 * 4 * 4
    assert run(model, image(163)).shape == (1, 1000)


def weight_and_bias(model, name):
    layer = getattr(model, name)
    return layer if isinstance(layer, nn.Linear) else getattr(layer, "conv", None) or layer.fc


@pytest.mark.parametrize(
    ("init", "std", "bias"),
    [
        # Section 5: N(0, 0.01) everywhere; biases 1 in conv2, conv4, conv5, fc6, fc7, and 0 in the others.
        ("paper", dict.fromkeys(LAYERS, 0.01), {"conv2": 1.0, "conv4": 1.0, "conv5": 1.0, "fc6": 1.0, "fc7": 1.0}),
        # bvlc_alexnet: std 0.005 in fc6 and fc7 only, bias 0.1 where the paper has 1.
        (
            "caffe",
            {**dict.fromkeys(LAYERS, 0.01), "fc6": 0.005, "fc7": 0.005},
            {"conv2": 0.1, "conv4": 0.1, "conv5": 0.1, "fc6": 0.1, "fc7": 0.1},
        ),
    ],
)
def test_initialisation_of_every_layer(init, std, bias):
    torch.manual_seed(0)
    model = AlexNet(input_size=SMALL, init=init)
    for name in LAYERS:
        layer = weight_and_bias(model, name)
        w = layer.weight
        assert abs(w.mean().item()) < 3 * std[name] / w.numel() ** 0.5, name
        assert w.std().item() == pytest.approx(std[name], rel=5 / w.numel() ** 0.5), name
        assert torch.all(layer.bias == bias.get(name, 0.0)), name


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
        ({"dropout_scaling": "train"}, "model.dropout_scaling"),
        ({"input_size": 60}, "crop_size"),
    ],
)
def test_bad_arguments_name_the_config_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        meta(**kwargs)


@pytest.mark.slow  # a script's start: torch loads in it
def test_a_class_count_of_none_is_refused_by_the_constructor_and_read_as_ilsvrcs_by_the_summary(tmp_path):
    with pytest.raises(ValueError, match=r"num_classes=None: give AlexNet the class count"):
        AlexNet(num_classes=None)
    # experiment=full leaves model.num_classes null (the store's count): the summary shows ILSVRC-2012's 1000
    shown = run_script(ROOT / "src" / "summary.py", "experiment=full", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert re.search(r"fc8\s.*\b1000\b", shown.stdout), shown.stdout


# Multiply-accumulates per image, written out from Figure 2: output side^2 x output channels x kernel area x input
# channels each output sees (48 of 96 in conv2, 192 of 384 in conv4 and conv5: one column's); then the fc layers.
PAPER_MACS = {
    "conv1": 55**2 * 96 * 11**2 * 3,
    "conv2": 27**2 * 256 * 5**2 * 48,
    "conv3": 13**2 * 384 * 3**2 * 256,
    "conv4": 13**2 * 384 * 3**2 * 192,
    "conv5": 13**2 * 256 * 3**2 * 192,
    "fc6": 6 * 6 * 256 * 4096,
    "fc7": 4096 * 4096,
    "fc8": 4096 * 1000,
}


@pytest.mark.parametrize("placement", [{}, {"placement": "split", "devices": ["cpu", "cpu"]}])
def test_the_summary_gives_each_paper_layer_its_output_parameters_and_flops(placement):
    from alexnet.network.summary import format_table, layer_rows

    rows = layer_rows(AlexNet(num_classes=1000, **placement), 227)
    outputs = {name: f"{c}x{side}x{side}" for name, (c, side) in PAPER_OUTPUTS.items()}
    assert [r["layer"] for r in rows] == list(LAYERS)
    assert {r["layer"]: r["output"] for r in rows} == {**outputs, "fc6": "4096", "fc7": "4096", "fc8": "1000"}
    assert {r["layer"]: r["params"] for r in rows} == PAPER_PARAMS
    assert {r["layer"]: r["flops"] for r in rows} == {name: 2 * macs for name, macs in PAPER_MACS.items()}
    assert {r["device"] for r in rows} == {"cpu"}
    table = format_table(rows).splitlines()
    assert table[0].split() == ["layer", "output", "params", "GFLOPs", "device"] and table[1] == table[-2] == "-" * 52
    assert table[2].split() == ["conv1", "96x27x27", "34,944", "0.211", "cpu"]
    assert table[-1].split()[:3] == ["total", "60,965,224", f"{2 * sum(PAPER_MACS.values()) / 1e9:.3f}"]
