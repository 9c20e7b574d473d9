"""Tests of the network definitions (lossdecay_lib.models): shapes, structure and parameter counts.

Kept light for CPU: small widths and inputs, except one full-width U-Net-256 forward pass.
"""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx
from torch import nn
from torchvision.models import resnet18 as tv_resnet18

from lossdecay_lib.models import (
    AUX_LOSS_WEIGHT,
    MODEL_NAMES,
    DilatedResNet,
    PatchDiscriminator,
    PlainNet,
    PSPNet,
    PSPNetOutput,
    UNetGenerator,
    build_model,
    cached_imagenet_weights,
    count_parameters,
    plain_stage_depths,
    resnet18_cifar,
    resnet34_cifar,
    weight_layers,
)


def _cifar_batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------------
# Plain networks (paper Fig. 1)


@pytest.mark.parametrize("depth", [5, 20, 33, 40, 50])
def test_plain_net_has_exactly_depth_weight_layers(depth):
    model = PlainNet(depth=depth, widths=(4, 8, 16))
    layers = model.weight_layers()
    assert len(layers) == depth
    assert layers[0][0] == "stem.conv" and layers[-1][0] == "fc"
    assert all(isinstance(m, nn.Conv2d) for _, m in layers[:-1]) and isinstance(layers[-1][1], nn.Linear)
    # nothing else carries parameters except batch norm: no hidden projection or shortcut layer
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    assert all(isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) for m in owners)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in owners) == depth
    assert sum(model.stage_depths) == depth - 2
    assert model(_cifar_batch()).shape == (2, 10)


def test_plain_stage_depths_rule():
    assert plain_stage_depths(20) == (6, 6, 6)  # He et al.'s plain-20
    assert plain_stage_depths(40) == (13, 13, 12)
    assert plain_stage_depths(50) == (16, 16, 16)
    assert plain_stage_depths(56) == (18, 18, 18)
    assert plain_stage_depths(7) == (2, 2, 1)
    assert plain_stage_depths(6, num_stages=2) == (2, 2)


def test_plain_net_downsamples_between_stages():
    model = PlainNet(depth=11, widths=(4, 8, 16))
    strides = {name: m.stride for name, m in model.weight_layers() if isinstance(m, nn.Conv2d)}
    assert {n for n, s in strides.items() if s == (2, 2)} == {"layer2.0.conv", "layer3.0.conv"}
    feats = model.layer3(model.layer2(model.layer1(model.stem(_cifar_batch()))))
    assert feats.shape == (2, 16, 8, 8)


def _graph_ops(model: nn.Module):
    graph = torch.fx.symbolic_trace(model).graph
    return {(n.op, n.target) for n in graph.nodes}


def test_plain_net_has_no_skip_connection():
    merges = {
        ("call_function", operator.add),
        ("call_function", operator.iadd),
        ("call_function", torch.add),
        ("call_function", torch.cat),
        ("call_method", "add"),
        ("call_method", "add_"),
    }
    assert not (_graph_ops(PlainNet(depth=12, widths=(4, 8, 16))) & merges)
    # the same check sees the shortcuts of a ResNet
    assert _graph_ops(resnet18_cifar(width=4)) & merges

    # behaviour: zero one middle convolution and the input no longer reaches the output
    model = PlainNet(depth=12, widths=(4, 8, 16)).eval()
    with torch.no_grad():
        model.layer2[1].conv.weight.zero_()
        a, b = model(_cifar_batch()), model(torch.randn(2, 3, 32, 32))
    assert torch.allclose(a, b)


def test_plain_net_without_batch_norm():
    model = PlainNet(depth=20, widths=(4, 8, 16), batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for _, m in model.weight_layers())
    assert len(model.weight_layers()) == 20
    assert torch.isfinite(model(_cifar_batch())).all()
    with_bn = PlainNet(depth=20, widths=(4, 8, 16))
    assert all(m.bias is None for _, m in with_bn.weight_layers()[:-1])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 19


@pytest.mark.parametrize("depth", [4, 0, -3, 20.0, True])
def test_plain_net_invalid_depth_names_the_valid_range(depth):
    with pytest.raises(ValueError, match=r"integer depth >= 5"):
        PlainNet(depth=depth)


def test_plain_net_min_depth_follows_stage_count():
    assert len(PlainNet(depth=4, widths=(4, 8)).weight_layers()) == 4
    with pytest.raises(ValueError, match=r">= 4"):
        PlainNet(depth=3, widths=(4, 8))


def test_plain_net_int_width_and_classes():
    model = PlainNet(depth=8, widths=6, num_classes=7)
    assert model.widths == (6, 12, 24)
    assert model(_cifar_batch()).shape == (2, 7)


def test_plain_net_channels_last():
    model = PlainNet(depth=10, widths=(4, 8, 16)).eval()
    x = _cifar_batch()
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(expected, got, atol=1e-5)


def test_plain_net_he_initialisation():
    model = PlainNet(depth=20)
    conv = model.layer3[3].conv  # 64 -> 64 channels, 3x3: std sqrt(2 / (64 * 9))
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


# --------------------------------------------------------------------------------------------------
# ResNet-34 for CIFAR (the authors' code)


def test_resnet34_cifar_parameter_count():
    # the pytorch-cifar ResNet34 (3x3 stem, no max-pool) for 10 classes
    assert count_parameters(resnet34_cifar()) == 21_282_122
    assert count_parameters(resnet18_cifar()) == 11_173_962


def test_resnet_cifar_shapes_and_weight_layers():
    model = resnet34_cifar(num_classes=10, width=4)
    assert model(_cifar_batch()).shape == (2, 10)
    # 1 stem + 2 * 16 block convolutions + 3 shortcut projections + classifier
    assert len(weight_layers(model)) == 37
    assert resnet18_cifar(num_classes=100, width=4)(_cifar_batch()).shape == (2, 100)


# --------------------------------------------------------------------------------------------------
# Registry


def test_build_model_by_name():
    assert isinstance(build_model("plain", depth=9, widths=4), PlainNet)
    net = build_model("resnet34_cifar", width=4, num_classes=3)
    assert net(_cifar_batch()).shape == (2, 3)


def test_build_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_model("vgg16")
    message = str(info.value)
    assert "vgg16" in message
    for name in ("plain", "resnet34_cifar", "resnet18_cifar"):
        assert name in MODEL_NAMES and name in message


# --------------------------------------------------------------------------------------------------
# PSPNet (Section III.B)


def test_aux_loss_weight():
    assert AUX_LOSS_WEIGHT == 0.4


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50"])
def test_dilated_backbone_output_stride_8(backbone):
    net = DilatedResNet(backbone).eval()
    with torch.no_grad():
        c3, c4 = net(torch.randn(1, 3, 64, 96))
    assert c3.shape[-2:] == (8, 12) and c4.shape[-2:] == (8, 12)
    assert c4.shape[1] == net.out_channels and c3.shape[1] == net.aux_channels


def test_small_backbone_dilations():
    net = DilatedResNet("resnet18")
    expected = {
        "layer3.0.conv1": 1, "layer3.0.conv2": 2, "layer3.1.conv1": 2, "layer3.1.conv2": 2,
        "layer4.0.conv1": 2, "layer4.0.conv2": 4, "layer4.1.conv1": 4, "layer4.1.conv2": 4,
    }
    convs = dict(net.named_modules())
    for name, d in expected.items():
        assert convs[name].dilation == (d, d) and convs[name].padding == (d, d) and convs[name].stride == (1, 1)
    assert convs["layer2.0.conv1"].stride == (2, 2)


def test_pspnet_train_mode_returns_main_and_aux_eval_mode_main_only():
    model = PSPNet(num_classes=5, backbone="resnet18", head_channels=32, aux_channels=16)
    x = torch.randn(2, 3, 60, 44)
    out = model.train()(x)
    assert isinstance(out, PSPNetOutput)
    assert out.main.shape == (2, 5, 60, 44) and out.aux.shape == (2, 5, 60, 44)
    (out.main.mean() + AUX_LOSS_WEIGHT * out.aux.mean()).backward()
    assert model.aux_head[0].weight.grad is not None
    with torch.no_grad():
        main = model.eval()(x)
    assert isinstance(main, torch.Tensor) and main.shape == (2, 5, 60, 44)
    assert model.backbone_init == "random"


def test_pspnet_structure():
    model = PSPNet(num_classes=21, backbone="resnet18")
    assert [branch[0].output_size for branch in model.ppm.branches] == [1, 2, 3, 6]
    assert [branch[1].out_channels for branch in model.ppm.branches] == [128] * 4  # 512 / 4
    assert model.head[0].in_channels == 1024 and model.head[0].out_channels == 512
    assert model.aux_head[0].in_channels == 256 and model.aux_head[0].out_channels == 256
    assert model.head[3].p == 0.1 and model.head[4].out_channels == 21
    no_aux = PSPNet(num_classes=3, backbone="resnet18", head_channels=8, aux=False).train()
    assert no_aux.aux_head is None and no_aux(torch.randn(2, 3, 32, 32)).aux is None
    with pytest.raises(ValueError, match="resnet101"):
        PSPNet(num_classes=3, backbone="vgg16")


def test_pspnet_backbone_weights_only_from_local_files(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert cached_imagenet_weights("resnet18") is None
    with pytest.raises(FileNotFoundError):
        PSPNet(num_classes=3, backbone="resnet18", pretrained_backbone="imagenet")

    reference = tv_resnet18()
    with torch.no_grad():
        reference.conv1.weight.fill_(0.25)
    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's file name
    torch.save(reference.state_dict(), path)
    assert cached_imagenet_weights("resnet18") == path
    for source in ("imagenet", str(path)):
        model = PSPNet(num_classes=3, backbone="resnet18", head_channels=8, pretrained_backbone=source)
        assert model.backbone_init == str(path)
        assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
        assert torch.equal(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


# --------------------------------------------------------------------------------------------------
# pix2pix (Section III.C)


@pytest.fixture(scope="module")
def reference_width_pix2pix():
    torch.manual_seed(0)
    return UNetGenerator(ngf=64), PatchDiscriminator(in_channels=6, ndf=64)


def test_pix2pix_parameter_counts_match_reference(reference_width_pix2pix):
    generator, discriminator = reference_width_pix2pix
    n_g, n_d = count_parameters(generator), count_parameters(discriminator)
    # the reference prints "[Network G] Total number of parameters : 54.414 M" and "... D ... 2.769 M"
    assert n_g == 54_413_955 and "%.3f" % (n_g / 1e6) == "54.414"
    assert n_d == 2_768_705 and "%.3f" % (n_d / 1e6) == "2.769"


def test_unet_256_full_width_forward(reference_width_pix2pix):
    generator, _ = reference_width_pix2pix
    with torch.no_grad():
        y = generator.eval()(torch.randn(1, 3, 256, 256))
    assert y.shape == (1, 3, 256, 256) and y.abs().max() <= 1


def test_unet_structure():
    generator = UNetGenerator(ngf=4)
    assert len(generator.down) == 8 and len(generator.up) == 8
    dropouts = [i for i, block in enumerate(generator.up) if any(isinstance(m, nn.Dropout) for m in block)]
    assert dropouts == [1, 2, 3]  # the three decoder blocks just above the innermost
    assert all(m.p == 0.5 for m in generator.modules() if isinstance(m, nn.Dropout))
    convs = [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 16
    assert [m.bias is not None for m in convs] == [False] * 15 + [True]  # only the output layer
    assert isinstance(generator.up[-1][-1], nn.Tanh)
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in generator.modules()) == 7
    instance = UNetGenerator(ngf=4, norm="instance")
    assert all(m.bias is not None for m in instance.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    with torch.no_grad():
        assert generator.train()(torch.randn(2, 3, 256, 256)).shape == (2, 3, 256, 256)
        assert UNetGenerator(ngf=4, num_downs=7)(torch.randn(2, 3, 128, 128)).shape == (2, 3, 128, 128)


def test_unet_skips_carry_activated_encoder_features_first():
    # as in the reference: decoder input = cat([LeakyReLU(encoder features), previous decoder output])
    generator = UNetGenerator(ngf=4).eval()
    seen = {}
    generator.down[5].register_forward_hook(lambda m, i, o: seen.__setitem__("skip", o.clone()))
    generator.up[2].register_forward_pre_hook(lambda m, i: seen.__setitem__("up_in", i[0].clone()))
    generator.up[1].register_forward_hook(lambda m, i, o: seen.__setitem__("up_prev", o.clone()))
    with torch.no_grad():
        generator(torch.randn(1, 3, 256, 256))
    skip = seen["skip"]
    assert isinstance(generator.down[5][-1], nn.LeakyReLU)
    assert torch.equal(seen["up_in"], torch.cat([skip, seen["up_prev"]], dim=1))


def test_pix2pix_initialisation(reference_width_pix2pix):
    generator, discriminator = reference_width_pix2pix
    conv_weights = torch.cat([m.weight.flatten() for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert conv_weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn = torch.cat([m.weight for m in discriminator.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01) and bn.std().item() == pytest.approx(0.02, rel=0.2)
    assert not any(m.bias.detach().any() for m in generator.modules() if isinstance(m, nn.BatchNorm2d))


def test_patch_discriminator_shape_and_conditioning():
    discriminator = PatchDiscriminator(in_channels=6, ndf=4).eval()
    source, target = torch.randn(2, 3, 256, 256), torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        scores = discriminator(source, target)
        assert scores.shape == (2, 1, 30, 30)
        assert torch.equal(scores, discriminator(torch.cat([source, target], dim=1)))
    assert not any(isinstance(m, nn.Sigmoid) for m in discriminator.modules())


def test_patch_discriminator_receptive_field_is_70():
    discriminator = PatchDiscriminator(in_channels=6, ndf=2).eval()
    x = torch.randn(1, 6, 160, 160, requires_grad=True)
    out = discriminator(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(dim=1).nonzero(), seen.any(dim=0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


def test_channels_last_is_avoided_only_where_it_crashes_the_cpu_backward():
    from lossdecay_lib.models import build_model, channels_last_is_safe

    cpu = torch.device("cpu")
    assert not channels_last_is_safe(resnet34_cifar(width=4), cpu)  # 1x1 stride-2 shortcut over 4 channels
    assert channels_last_is_safe(resnet34_cifar(width=8), cpu)
    assert channels_last_is_safe(build_model("plain", depth=6, widths=4), cpu)  # 3x3 convolutions only
    assert channels_last_is_safe(resnet34_cifar(width=4), torch.device("meta"))  # not a CPU question


def test_the_width_4_resnet_trains_in_a_subprocess_without_crashing(tmp_path):
    """The crash channels_last_is_safe avoids kills the process, so the run happens in a child."""
    import subprocess
    import sys

    code = ("from lossdecay_lib.runs import RunStore\n"
            "from lossdecay_lib.training import ClassificationConfig, train_classifier\n"
            "c = ClassificationConfig(profile='smoke', model='resnet34_cifar', model_settings=(('width', 4),),\n"
            "                         train_per_class=5, test_per_class=2, epochs=1, batch_size=25)\n"
            f"r = train_classifier(c, store=RunStore({str(tmp_path)!r}), progress=False)\n"
            "assert r['status'] == 'finished'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
