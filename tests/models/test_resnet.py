"""Image backbones: shapes, the ResNet-D tweaks, weights from safetensors, freezing, LR groups."""

import pytest
import torch

from deepfit.errors import ConfigError, DataError
from deepfit.models.multimodal import ImageTableModel
from deepfit.models.resnet import (ResNet, SmallCNN, build_backbone, discriminative_groups, freeze, load_weights,
                                   resnet18, resnet34, resnet50, unfreeze)

TINY = {"widths": (8, 16, 16, 32), "stem_width": 8}


@pytest.mark.parametrize("make,features", [(resnet18, 32), (resnet34, 32), (resnet50, 128)])
def test_resnet_shapes(make, features):
    net = make(n_outputs=5, **TINY)
    assert net(torch.randn(2, 3, 64, 48)).shape == (2, 5)
    assert net.features(torch.randn(2, 3, 32, 32)).shape == (2, features)


@pytest.mark.parametrize("stem_stride", [1, 2, 4])
def test_resnet_stem_strides_and_stem_of_three_convs(stem_stride):
    net = ResNet(3, depths=(1, 1), widths=(8, 16), stem_width=8, stem_stride=stem_stride)
    convs = [m for m in net.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3
    assert net.body(torch.randn(1, 3, 32, 32)).shape[-1] == 32 // stem_stride // 2


def test_resnet_d_shortcut_average_pools_and_blocks_start_as_identity():
    net = ResNet(3, depths=(1, 1), widths=(8, 16), stem_width=8).eval()
    block = net.stages[1][0]
    assert isinstance(block.shortcut[0], torch.nn.AvgPool2d)
    assert block.branch[-1][1].weight.abs().sum() == 0  # zero-init last BN gamma
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(block.shortcut(x)))


def test_small_cnn_shapes_and_channels_last_matches():
    torch.manual_seed(0)
    a = SmallCNN(10, widths=(8, 16, 32), stem_stride=2).eval()
    b = SmallCNN(10, widths=(8, 16, 32), stem_stride=2, channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 32, 32)
    assert a(x).shape == (3, 10)
    torch.testing.assert_close(a(x), b(x), atol=1e-4, rtol=1e-4)
    assert SmallCNN(0).n_outputs == 0 and SmallCNN(0)(torch.randn(1, 3, 16, 16)).shape == (1, 128)


def test_build_backbone_round_trips_config():
    net = resnet18(4, **TINY)
    again = build_backbone("resnet", 4, net.config())
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    with pytest.raises(ConfigError, match="unknown image backbone"):
        build_backbone("vgg", 4, {})


def test_load_weights_from_safetensors_skips_the_new_head(tmp_path):
    from safetensors.torch import save_file

    source = resnet18(10, **TINY)
    save_file(source.state_dict(), tmp_path / "r18.safetensors")
    target = resnet18(3, **TINY)
    report = load_weights(target, tmp_path / "r18.safetensors")
    assert sorted(report["skipped"]) == ["head.bias", "head.weight"]
    torch.testing.assert_close(target.stem[0][0].weight, source.stem[0][0].weight)
    assert not torch.equal(target.head.weight[:3], source.head.weight[:3])
    with pytest.raises(DataError, match="shape"):
        load_weights(resnet18(3, **TINY), tmp_path / "r18.safetensors", skip_mismatched=False)
    with pytest.raises(DataError, match="does not exist"):
        load_weights(target, tmp_path / "nope.safetensors")
    with pytest.raises(DataError, match="no tensor matching"):
        load_weights(SmallCNN(3), tmp_path / "r18.safetensors")


def test_freeze_unfreeze_and_discriminative_groups():
    net = resnet18(3, **TINY)
    freeze(net)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())
    groups = discriminative_groups(net, lr_ratio=0.01, weight_decay=0.1)
    scales = [g["lr_scale"] for g in groups]
    assert scales[0] == pytest.approx(0.01) and scales[-1] == pytest.approx(1.0) and scales == sorted(scales)
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert all(g["weight_decay"] == 0 for g in groups if g["params"][0].ndim < 2)


def test_image_table_model_with_and_without_table_columns():
    spec = {"n_num": 2, "num_bins": [None, None], "cat_cardinalities": [3, 4], "n_text": 1, "text_buckets": 64}
    cfg = {"backbone": "small_cnn", "backbone_config": {"widths": [8, 16]}, "mean": [0.5] * 3, "std": [0.2] * 3}
    img = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    both = ImageTableModel(n_outputs=2, table_spec=spec, **cfg)
    out = both(img, torch.randn(4, 2), torch.randint(0, 3, (4, 2)), torch.randint(0, 64, (4, 1, 64)))
    assert out.shape == (4, 2)
    alone = ImageTableModel(n_outputs=2, **cfg)
    assert alone(img).shape == (4, 2) and alone.table is None
    assert len(alone.layer_groups()) == 3  # two stages, head
    with pytest.raises(ConfigError, match="other columns"):
        both(img)
