"""Fine-tuning the packaged EfficientNet-Lite0 on photos: what is frozen, the cached-features
frozen phase, the artifact (weights + the pretrained source's checksum), exact resume, export,
serve, the CLI flag and the choice ``pretrained='auto'`` makes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import deepfit
from deepfit.errors import PretrainedError
from deepfit.pretrained import efficientnet as eff
from deepfit.tasks.images import ImageSettings, fit_images

pytestmark = pytest.mark.skipif(not eff.available(), reason=f"{eff.PACKAGE} is not installed: "
                                "pip install 'deepfit[pretrained]'")
TINY = {"epochs": 1, "batch_size": 8, "size": 32, "test_size": 0.25}
# 64 px: at 32 the last feature map is 1x1 and BatchNorm statistics of 8-image batches are too noisy to learn on.
LEARN = {**TINY, "epochs": 2, "size": 64}


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DEEPFIT_PRETRAINED_DIR", str(tmp_path_factory.getbasetemp() / "pretrained-cache"))


def write_photos(root, per_class=12, side=40, seed=0):
    """Two classes of colour noise photos: reddish and greenish (native side 40: photo-like)."""
    rng = np.random.default_rng(seed)
    for label, channel in (("red", 0), ("green", 1)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 90, (side, side, 3), dtype=np.uint8)
            a[..., channel] += 150
            Image.fromarray(a).save(root / label / f"{i:02d}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    import os

    os.environ.setdefault("DEEPFIT_PRETRAINED_DIR", str(tmp_path_factory.getbasetemp() / "pretrained-cache"))
    root = tmp_path_factory.mktemp("photos")
    data = write_photos(root / "data")
    predictor = fit_images(str(data), ImageSettings(**LEARN), out=str(root / "run"), progress=False)
    return data, root / "run", predictor


def test_auto_fine_tunes_the_pretrained_backbone_on_photos_and_says_so(photo_run):
    _, run, predictor = photo_run
    plan = predictor.info["plan"]
    assert plan["pretrained"] == "efficientnet-lite0" and plan["backbone"] == "efficientnet_lite0"
    assert plan["mean"] == eff.MEAN and plan["size"] == 64
    assert any(n.startswith("pretrained='auto': colour photos") for n in predictor.info["notes"])
    head = predictor.info["head_phase"]  # the frozen phase ran on cached features (CPU)
    assert head["epochs"] == plan["head_epochs"] and head["valid_accuracy"] >= 0.75
    assert predictor.metrics["test_accuracy"] >= 0.8  # red vs green, 6 test photos


def test_artifact_carries_the_weights_and_the_pretrained_source(photo_run):
    data, run, predictor = photo_run
    meta = json.loads((run / "deepfit.json").read_text())
    source = meta["info"]["pretrained"]
    assert source["name"] == "efficientnet-lite0" and source["source"]["package"] == eff.PACKAGE
    from deepfit.pretrained.cache import sha256_file

    assert source["source"]["sha256"] == sha256_file(eff.source_path())
    loaded = deepfit.load(run)
    assert type(loaded.model.backbone).__name__ == "EfficientNetLite0"
    assert np.array_equal(loaded.predict_proba(str(data)).to_numpy(), predictor.predict_proba(str(data)).to_numpy())
    # fine-tuned: the stored backbone is not the ImageNet one any more
    imagenet = eff.efficientnet_lite0(n_outputs=0)
    assert not torch.equal(loaded.model.backbone.blocks[0].depthwise.conv.weight, imagenet.blocks[0].depthwise.conv.weight)


def test_the_frozen_phase_freezes_the_backbone_and_its_batchnorm_statistics():
    from deepfit.engine.callbacks import Callback
    from deepfit.engine.learner import Learner
    from deepfit.models.multimodal import ImageTableModel
    from deepfit.models.resnet import discriminative_groups
    from deepfit.tasks.images.callbacks import FreezeFirst

    torch.manual_seed(0)
    model = ImageTableModel(n_outputs=2, backbone="efficientnet_lite0", backbone_config={"dropout": 0.0},
                            mean=eff.MEAN, std=eff.STD)
    eff.load_pretrained(model.backbone)
    start = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head0 = model.head.weight.detach().clone()
    seen = {}

    class Spy(Callback):
        def on_batch_end(self, learner):
            bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            seen.setdefault(learner.epoch, set()).add((any(p.requires_grad for p in model.backbone.parameters()),
                                                       any(m.training for m in bns)))

        def on_epoch_end(self, learner):
            seen[f"state{learner.epoch}"] = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    y = (x[:, 0].float().mean(dim=(1, 2)) > 127).long()
    groups = discriminative_groups(model, lr_ratio=0.1, weight_decay=0.05)
    learner = Learner(model, (x, y), optimizer=lambda _g: torch.optim.AdamW(groups, lr=1e-3), lr=1e-3, batch_size=16,
                      callbacks=[FreezeFirst(model, 1), Spy()], progress=False, compile=False)
    learner.fit(2)
    assert seen[0] == {(False, False)}  # epoch 1: no backbone gradient, BatchNorm in eval mode
    assert seen[1] == {(True, True)}  # epoch 2: everything trains
    after_frozen = seen["state0"]
    assert all(torch.equal(after_frozen[k], v) for k, v in start.items())  # weights and running stats unmoved
    assert not torch.equal(model.head.weight, head0)
    moved = [k for k, v in start.items() if "running_mean" in k and not torch.equal(seen["state1"][k], v)]
    assert moved  # unfrozen: the statistics follow the new data


def test_resume_of_a_pretrained_run_is_exact(tmp_path):
    from deepfit.engine.learner import Learner

    data = write_photos(tmp_path / "data", per_class=10)
    settings = ImageSettings(**{**TINY, "epochs": 2}, checkpoint_every=1)
    whole = fit_images(str(data), settings, out=str(tmp_path / "whole"), progress=False)
    real, calls = Learner._train_step, {"n": 0}

    def dying(self, batch, *, divisor, last_micro):
        if batch[0].ndim == 4:  # a step on images: the fine-tuning phase (the head phase trains on features)
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("interrupted at fine-tuning step 3")
        return real(self, batch, divisor=divisor, last_micro=last_micro)

    Learner._train_step = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            fit_images(str(data), settings, out=str(tmp_path / "cut"), progress=False)
    finally:
        Learner._train_step = real
    assert (tmp_path / "cut.incomplete" / "last.ckpt").exists()
    resumed = fit_images(str(data), settings, out=str(tmp_path / "cut"), resume=True, progress=False)
    assert "head_phase" not in resumed.info  # the checkpoint already held the trained head
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_pretrained_none_and_missing_package(tmp_path, monkeypatch, capsys):
    from pretrained_support import hide_package

    from deepfit.cli import main

    data = write_photos(tmp_path / "data", per_class=6)
    assert main(["train", str(data), "--out", str(tmp_path / "none"), "--pretrained", "none", "--epochs", "1",
                 "--batch-size", "8", "--quiet"]) == 0
    assert "trained from scratch" in capsys.readouterr().out
    assert "pretrained" not in deepfit.load(tmp_path / "none").info["plan"]
    hide_package(monkeypatch, eff.PACKAGE)
    with pytest.raises(PretrainedError, match=r"pip install 'deepfit\[pretrained\]'"):
        fit_images(str(data), ImageSettings(**TINY, pretrained="efficientnet-lite0"), out=str(tmp_path / "x"),
                   progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.incomplete").exists()
    auto = fit_images(str(data), ImageSettings(**TINY), progress=False)
    assert "pretrained" not in auto.info["plan"]
    assert any("is not installed" in n for n in auto.info["notes"])


def test_pretrained_settings_are_checked():
    from deepfit.errors import ConfigError

    with pytest.raises(ConfigError, match="'efficientnet-lite0' or a local .safetensors file"):
        ImageSettings(pretrained="resnet-imagenet")
    with pytest.raises(ConfigError, match="drop model='resnet18'"):
        ImageSettings(pretrained="efficientnet-lite0", model="resnet18")
    assert ImageSettings(pretrained=None).pretrained == "none"


def test_export_of_a_pretrained_run_matches(photo_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from deepfit.export import export_onnx

    data, run, predictor = photo_run
    report = export_onnx(deepfit.load(run), tmp_path / "photos.onnx", data=str(data))
    assert report.max_abs_diff <= 1e-4
