"""ImageFeature: fitted channel statistics, encoding, errors at predict time, JSON state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from deepfit.errors import ConfigError, DataError
from deepfit.features.base import FEATURES
from deepfit.features.image import ImageFeature, channel_stats


def write(path, color, size=(30, 20)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def test_fit_records_channel_mean_and_std(tmp_path):
    paths = [write(tmp_path / f"r{i}.png", (255, 0, 0)) for i in range(3)]
    paths += [write(tmp_path / f"b{i}.png", (0, 0, 255)) for i in range(3)]
    f = ImageFeature("photo", size=12).fit(pd.Series(paths))
    assert f.mean == pytest.approx([0.5, 0.0, 0.5])
    assert f.std == pytest.approx([0.5, 1e-3, 0.5])  # a constant channel gets a floor, not zero
    out = f.encode(pd.Series(paths[:2] + paths[-1:]))["image"]
    assert out.shape == (3, 3, 12, 12) and out.dtype == np.uint8
    assert out[:, 0, 0, 0].tolist() == [255, 255, 0]


def test_fit_from_decoded_images():
    images = torch.zeros((4, 3, 8, 8), dtype=torch.uint8)
    images[:2, 1] = 255
    f = ImageFeature("x", size=8).fit(pd.Series(["unused"] * 4), images=images)
    assert f.mean == pytest.approx([0.0, 0.5, 0.0])
    assert channel_stats(images)[1] == pytest.approx([0.0, 0.5, 0.0])
    with pytest.raises(DataError, match="shape"):
        channel_stats(torch.zeros((2, 1, 4, 4), dtype=torch.uint8))


def test_encode_lists_every_bad_file(tmp_path):
    good = write(tmp_path / "good.png", (1, 2, 3))
    f = ImageFeature("photo", size=8).fit(pd.Series([good]))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    bad = [str(tmp_path / "empty.jpg"), str(tmp_path / "text.png"), str(tmp_path / "gone.jpg")]
    with pytest.raises(DataError) as info:
        f.encode(pd.Series([good] + bad))
    msg = str(info.value)
    assert "3 of 4 file(s) cannot be used" in msg
    for path, reason in zip(bad, ["zero-byte file", "not an image", "file not found"]):
        assert f"{path}: {reason}" in msg


def test_fit_fails_clearly_when_nothing_decodes(tmp_path):
    (tmp_path / "a.jpg").write_text("no")
    with pytest.raises(DataError, match="none of the 1 sampled images"):
        ImageFeature("photo", size=8).fit(pd.Series([str(tmp_path / "a.jpg")]))


def test_state_round_trip_through_json(tmp_path):
    paths = [write(tmp_path / f"{i}.png", (i * 40, 100, 200 - i * 40)) for i in range(4)]
    f = ImageFeature("photo", size=10, crop="squash").fit(pd.Series(paths))
    state = json.loads(json.dumps(f.state_dict()))
    g = ImageFeature.from_state("photo", state)
    assert (g.size, g.crop, g.mean, g.std) == (f.size, f.crop, f.mean, f.std)
    assert np.array_equal(g.encode(pd.Series(paths))["image"], f.encode(pd.Series(paths))["image"])
    assert FEATURES["image"] is ImageFeature


def test_bad_arguments_and_damaged_state():
    with pytest.raises(ConfigError, match="positive int"):
        ImageFeature("x", size=0)
    with pytest.raises(ConfigError, match="crop"):
        ImageFeature("x", crop="zoom")
    with pytest.raises(ConfigError, match="not fitted"):
        ImageFeature("x").encode(pd.Series(["a.png"]))
    with pytest.raises(DataError, match="lacks std"):
        ImageFeature.from_state("x", {"size": 8, "crop": "center", "mean": [0, 0, 0]})
    with pytest.raises(DataError, match="3 numbers"):
        ImageFeature.from_state("x", {"size": 8, "crop": "center", "mean": [0, 0], "std": [1, 1, 1]})
    with pytest.raises(DataError, match="damaged"):
        ImageFeature.from_state("x", {"size": "big", "crop": "center", "mean": [0, 0, 0], "std": [1, 1, 1]})
