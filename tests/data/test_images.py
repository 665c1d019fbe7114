"""Image readers, the Pillow decoder, and the worker-process loaders."""

from __future__ import annotations

import os
import pickle
import string

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deepfit.data.images import (
    MIN_SIDE,
    ImageBatches,
    ImageDataset,
    ImageError,
    ImageFolderDataset,
    Skipped,
    decode_image,
    decode_image_augmented,
    decode_images,
    read_image_folder,
    read_image_table,
)
from deepfit.errors import ColumnNotFound, ConfigError, DataError

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def solid(path, color=(255, 0, 0), size=(40, 30), fmt=None, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt, **kw)
    return str(path)


def tree(root, spec):
    """spec: {label: n_images}; solid colour per label index."""
    for k, (label, n) in enumerate(spec.items()):
        for i in range(n):
            solid(root / label / f"{i}.png", ((k * 80) % 256, 40, 200))
    return root


@pytest.fixture(params=["simplejpeg", "pillow"])
def backend(request, monkeypatch):
    """Run a test with each JPEG decoder (simplejpeg when installed; Pillow always)."""
    import deepfit.data.images.decode as decode

    if request.param == "simplejpeg" and decode._simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    if request.param == "pillow":
        monkeypatch.setattr(decode, "_simplejpeg", None)
    return request.param


def reasons(skipped):
    return {os.path.basename(s.path): s.reason for s in skipped}


# ----------------------------------------------------------------------------- readers


def test_class_folders(tmp_path):
    tree(tmp_path, {"cat": 3, "dog": 2})
    solid(tmp_path / "dog" / "nested" / "deep.jpg")  # nested folders belong to their class
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(b"x")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"x")
    df, skipped = read_image_folder(tmp_path)
    assert list(df.columns) == ["path", "label"]
    assert df["label"].tolist() == ["cat"] * 3 + ["dog"] * 3
    assert all(os.path.isabs(p) and os.path.exists(p) for p in df["path"])
    assert str(tmp_path / "dog" / "nested" / "deep.jpg") in set(df["path"])
    assert skipped == []


def test_train_valid_split_folders(tmp_path):
    tree(tmp_path / "train", {"a": 2, "b": 2})
    tree(tmp_path / "val", {"a": 1, "b": 1})
    tree(tmp_path / "test", {"b": 1})
    df, _ = read_image_folder(tmp_path)
    assert df.groupby("split").size().to_dict() == {"test": 1, "train": 4, "valid": 2}
    assert set(df.loc[df.split == "valid", "label"]) == {"a", "b"}
    tree(tmp_path / "valid", {"a": 1})
    with pytest.raises(DataError, match="two valid folders"):
        read_image_folder(tmp_path)


def test_split_class_missing_from_train_is_an_error(tmp_path):
    tree(tmp_path / "train", {"a": 2, "b": 2})
    tree(tmp_path / "valid", {"a": 1, "zebra": 1})
    with pytest.raises(DataError, match="zebra"):
        read_image_folder(tmp_path)


def test_regex_labels_flat_folder(tmp_path):
    for name in ["great_pyrenees_1.jpg", "great_pyrenees_22.jpg", "Abyssinian_3.jpg", "notes.txt", "weird.jpg"]:
        solid(tmp_path / name, fmt="JPEG") if name.endswith(".jpg") else (tmp_path / name).write_text("x")
    df, skipped = read_image_folder(tmp_path, label_regex=r"^(.+)_\d+\.jpg$")
    assert sorted(df["label"]) == ["Abyssinian", "great_pyrenees", "great_pyrenees"]
    assert reasons(skipped) == {"notes.txt": "not an image file (suffix '.txt')",
                                "weird.jpg": "file name does not match label_regex '^(.+)_\\\\d+\\\\.jpg$'"}


def test_regex_errors(tmp_path):
    tree(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(ConfigError, match="no group"):
        read_image_folder(tmp_path, label_regex=r"\d+")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        read_image_folder(tmp_path, label_regex=r"(")
    with pytest.raises(DataError, match="no image file name"):
        read_image_folder(tmp_path, label_regex=r"^(zzz)")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(string.ascii_letters + "-", min_size=1, max_size=8),
                       st.integers(1, 3), min_size=2, max_size=4))
def test_regex_labels_round_trip(tmp_path_factory, counts):
    root = tmp_path_factory.mktemp("rx")
    for label, n in counts.items():
        for i in range(n):
            (root / f"{label}_{i}.png").write_bytes(b"not decoded by the reader")
    df, skipped = read_image_folder(root, label_regex=r"^(.+)_\d+\.png$")
    assert skipped == []
    assert df["label"].value_counts().to_dict() == counts


def test_single_class_empty_class_no_images_are_clear_errors(tmp_path):
    tree(tmp_path / "one", {"cat": 2})
    with pytest.raises(DataError, match="only one class .'cat'. .*at least two"):
        read_image_folder(tmp_path / "one")
    tree(tmp_path / "empty", {"cat": 2})
    (tmp_path / "empty" / "dog").mkdir()
    (tmp_path / "empty" / "dog" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="class folder .*dog' has no images .1 other file"):
        read_image_folder(tmp_path / "empty")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no images in"):
        read_image_folder(tmp_path / "none")
    solid(tmp_path / "loose" / "a.jpg")
    with pytest.raises(DataError, match="no class folders.*label_regex"):
        read_image_folder(tmp_path / "loose")
    with pytest.raises(DataError, match="does not exist"):
        read_image_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="is a file"):
        read_image_folder(tmp_path / "loose" / "a.jpg")


def test_reader_skips_zero_byte_and_non_image_files(tmp_path):
    tree(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / "zero.jpg").write_bytes(b"")
    (tmp_path / "b" / "labels.csv").write_text("x")
    solid(tmp_path / "stray.jpg")
    df, skipped = read_image_folder(tmp_path)
    assert len(df) == 4
    r = reasons(skipped)
    assert r["zero.jpg"] == "zero-byte file"
    assert r["labels.csv"] == "not an image file (suffix '.csv')"
    assert r["stray.jpg"].startswith("not in a class folder")


def test_unreadable_class_folder_is_skipped(tmp_path):
    tree(tmp_path, {"a": 2, "b": 2, "locked": 1})
    locked = tmp_path / "locked"
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading (see the scandir test below)")
        df, skipped = read_image_folder(tmp_path)
        assert set(df["label"]) == {"a", "b"}
        assert reasons(skipped)["locked"].startswith("unreadable: PermissionError")
    finally:
        os.chmod(locked, 0o755)


def test_unreadable_folder_via_scandir_error(tmp_path, monkeypatch):
    tree(tmp_path, {"a": 2, "b": 2, "locked": 1})
    real = os.scandir

    def scandir(path):
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr("deepfit.data.images.readers.os.scandir", scandir)
    df, skipped = read_image_folder(tmp_path)
    assert set(df["label"]) == {"a", "b"}
    assert skipped == [Skipped(str(tmp_path / "locked"), "unreadable: PermissionError: Permission denied")]


def test_read_image_table_resolves_relative_to_csv(tmp_path):
    solid(tmp_path / "data" / "img" / "a.jpg")
    solid(tmp_path / "data" / "img" / "b.jpg")
    csv = tmp_path / "data" / "labels.csv"
    csv.write_text(f"file,label\nimg/a.jpg,x\n{tmp_path / 'data' / 'img' / 'b.jpg'},y\n")
    df = read_image_table(csv, "file")
    assert df["file"].tolist() == [str(tmp_path / "data" / "img" / "a.jpg"), str(tmp_path / "data" / "img" / "b.jpg")]
    assert df["label"].tolist() == ["x", "y"]
    frame = pd.DataFrame({"file": ["a.jpg", "missing.jpg"]})
    assert read_image_table(frame, "file", base_dir=tmp_path / "data" / "img")["file"][1].endswith("missing.jpg")
    with pytest.raises(ColumnNotFound, match="did you mean 'file'"):
        read_image_table(csv, "fille")
    with pytest.raises(DataError, match="none of the 2 paths.*base_dir"):
        read_image_table(frame, "file", base_dir=tmp_path)
    with pytest.raises(DataError, match="blank"):
        read_image_table(pd.DataFrame({"file": ["a.jpg", " "]}), "file", base_dir=tmp_path / "data" / "img")


_SEGMENT = st.text(string.ascii_letters + string.digits + "_- ", min_size=1, max_size=6).filter(
    lambda t: t.strip() == t)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_SEGMENT, min_size=1, max_size=3), min_size=1, max_size=4),
       st.sampled_from(["", "./", "../"]))
def test_read_image_table_relative_paths_property(tmp_path_factory, rel_parts, prefix):
    base = tmp_path_factory.mktemp("base") / "data"
    base.mkdir()
    rels = [prefix + "/".join(parts) + ".png" for parts in rel_parts]
    frame = pd.DataFrame({"img": rels, "y": range(len(rels))})
    (base / ".." / "anchor.png").resolve().write_bytes(b"x")  # one existing file keeps the check quiet
    frame.loc[len(frame)] = ["../anchor.png", -1]
    out = read_image_table(frame, "img", base_dir=base)
    assert out["img"].tolist() == [os.path.normpath(os.path.join(base, r)) for r in frame["img"]]
    assert all(os.path.isabs(p) for p in out["img"]) and out["y"].tolist() == frame["y"].tolist()


# ----------------------------------------------------------------------------- decoding


def test_bad_files_give_reasons(tmp_path, backend):
    good = solid(tmp_path / "good.jpg", size=(200, 150), fmt="JPEG")
    data = open(good, "rb").read()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("this is not a picture")
    (tmp_path / "zero.jpg").write_bytes(b"")
    solid(tmp_path / "tiny.png", size=(2, 2))
    expected = {
        "trunc.jpg": "truncated JPEG",
        "text.jpg": "not an image (Pillow cannot identify the format)",
        "zero.jpg": "zero-byte file",
        "tiny.png": f"too small: 2x2 < {MIN_SIDE}x{MIN_SIDE}",
        "missing.jpg": "file not found",
    }
    for name, reason in expected.items():
        with pytest.raises(ImageError) as info:
            decode_image(tmp_path / name, 32)
        assert info.value.reason == reason
        assert isinstance(info.value, DataError)
    assert decode_image(good, 32).shape == (32, 32, 3)
    with pytest.raises(ConfigError):
        decode_image(good, 0)
    with pytest.raises(ConfigError):
        decode_image(good, 32, crop="zoom")


def test_exif_orientation_is_honoured(tmp_path, backend):
    # Stored 40x20: left half red, right half blue. Orientation 6 = "rotate 90 degrees clockwise
    # to display", so the upright image is 20x40 with red on top and blue below.
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(a).save(path, exif=exif, quality=95)
    out = decode_image(path, 16, crop="squash").astype(int)
    assert out[:6, :, 0].mean() > 200 and out[:6, :, 2].mean() < 50  # top red
    assert out[-6:, :, 2].mean() > 200 and out[-6:, :, 0].mean() < 50  # bottom blue
    plain = tmp_path / "plain.jpg"
    Image.fromarray(a).save(plain, quality=95)
    out = decode_image(plain, 16, crop="squash").astype(int)
    assert out[:, :6, 0].mean() > 200 and out[:, -6:, 2].mean() > 200  # untagged: left red, right blue


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, backend, orientation):
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    a = np.kron(rng.integers(0, 256, (3, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 24x32 blocks
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(a).save(path, exif=exif, quality=95)
    with Image.open(path) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).astype(int)
    h, w = upright.shape[:2]
    out = decode_image(path, 16, crop="squash").astype(int)
    ref = np.asarray(Image.fromarray(upright.astype(np.uint8)).resize((16, 16), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(out - ref).mean() < 3


def test_simplejpeg_and_pillow_give_the_same_pixels(tmp_path, monkeypatch):
    import deepfit.data.images.decode as decode

    if decode._simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(128, 40, (90, 120, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "x.jpg"
    Image.fromarray(a).save(path, quality=90)
    fast = decode_image(path, 64)
    monkeypatch.setattr(decode, "_simplejpeg", None)
    assert np.abs(fast.astype(int) - decode_image(path, 64).astype(int)).max() <= 1


def test_jpeg_with_junk_before_end_marker_still_decodes(tmp_path, backend):
    good = solid(tmp_path / "g.jpg", (10, 200, 30), size=(64, 48), fmt="JPEG", quality=95)
    data = open(good, "rb").read()
    assert data.endswith(b"\xff\xd9")
    (tmp_path / "junk.jpg").write_bytes(data[:-2] + b"\x00" * 40 + b"\xff\xd9")  # libjpeg warns, Pillow accepts
    out = decode_image(tmp_path / "junk.jpg", 16).reshape(-1, 3).mean(0)
    assert np.abs(out - [10, 200, 30]).max() < 6


def test_mode_conversions(tmp_path):
    def one(img, name, **kw):
        p = tmp_path / name
        img.save(p, **kw)
        out = decode_image(p, 8)
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
        return out.reshape(-1, 3).mean(0).round().astype(int).tolist()

    assert one(Image.new("L", (20, 20), 100), "gray.png") == [100, 100, 100]
    assert one(Image.new("1", (20, 20), 1), "bw.png") == [255, 255, 255]
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    assert one(pal, "pal.png") == [10, 200, 30]
    transparent_pal = Image.new("P", (20, 20), 0)
    transparent_pal.putpalette([0, 0, 0] * 256)
    assert one(transparent_pal, "tpal.png", transparency=0) == [255, 255, 255]  # transparent -> white
    assert one(Image.new("RGBA", (20, 20), (255, 0, 0, 0)), "clear.png") == [255, 255, 255]
    assert one(Image.new("RGBA", (20, 20), (255, 0, 0, 255)), "opaque.png") == [255, 0, 0]
    assert one(Image.new("LA", (20, 20), (0, 128)), "la.png") in ([127, 127, 127], [128, 128, 128])
    sixteen = Image.fromarray(np.full((20, 20), 65535, np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert one(sixteen, "sixteen.png") == [255, 255, 255]
    assert one(Image.fromarray(np.full((20, 20), 32896, np.uint16)), "mid16.png") == [128, 128, 128]
    assert one(Image.new("CMYK", (20, 20), (0, 0, 0, 0)), "cmyk.jpg", quality=95) == [255, 255, 255]
    assert one(Image.fromarray(np.full((20, 20), 0.5, np.float32)), "float.tif") == [128, 128, 128]


def test_draft_decoding_matches_full_decoding(tmp_path, backend):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:900, 0:1200]
    a = np.stack([xx * 255 // 1200, yy * 255 // 900, (xx + yy) % 256], -1).astype(np.float64)
    a = np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(a).save(path, quality=90)
    fast = decode_image(path, 64).astype(int)  # drafted at 1/8 scale
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR, box=(150, 0, 1050, 900)))
    assert np.abs(fast - ref.astype(int)).mean() < 3.0


def test_random_resized_crop_is_seeded_and_flips(tmp_path):
    a = np.zeros((30, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    path = tmp_path / "half.png"
    Image.fromarray(a).save(path)
    x1 = decode_image_augmented(path, 16, rng=np.random.default_rng(3))
    x2 = decode_image_augmented(path, 16, rng=np.random.default_rng(3))
    assert np.array_equal(x1, x2)
    full = {"scale": (1.0, 1.0), "ratio": (4 / 3, 4 / 3)}
    flips = []
    for seed in range(12):
        out = decode_image_augmented(path, 16, rng=np.random.default_rng(seed), **full)
        left_red = out[:, :4, 0].mean() > 200
        assert left_red != (out[:, -4:, 0].mean() > 200)
        flips.append(not left_red)
    assert 0 < sum(flips) < 12  # both orientations occur


def test_decode_images_order_and_keep_mask_with_workers(tmp_path, backend):
    paths, expect_keep, shades = [], [], []
    for i in range(80):
        if i % 9 == 4:
            p = tmp_path / f"{i:02d}.jpg"
            p.write_text("bad")
            expect_keep.append(False)
        else:
            p = solid(tmp_path / f"{i:02d}.png", (i * 3, 255 - i * 3, 7))
            expect_keep.append(True)
            shades.append(i * 3)
        paths.append(str(p))
    images, skipped, keep = decode_images(paths, 12, workers=2)
    assert keep.tolist() == expect_keep
    assert images.shape == (sum(expect_keep), 3, 12, 12) and images.dtype == torch.uint8
    assert images[:, 0, 5, 5].tolist() == shades  # order kept across workers
    assert [s.path for s in skipped] == [p for p, k in zip(paths, expect_keep) if not k]
    assert {s.reason for s in skipped} == {"not an image (Pillow cannot identify the format)"}
    same, _, _ = decode_images(paths, 12, workers=0)
    assert torch.equal(same, images)


# ----------------------------------------------------------------------------- loaders


def make_set(root, n=24, bad=(5, 17)):
    paths, labels = [], []
    for i in range(n):
        label = i % 2
        if i in bad:
            p = root / f"{i}.jpg"
            p.write_bytes(b"")
        else:  # red or blue by label; a green ramp makes every crop and flip visible
            w = 24 + i
            a = np.zeros((20, w, 3), np.uint8)
            a[..., 2 * label] = 255
            a[..., 1] = np.linspace(0, 255, w).astype(np.uint8)[None, :]
            p = root / f"{i}.png"
            Image.fromarray(a).save(p)
        paths.append(str(p))
        labels.append(label)
    return paths, labels


def test_image_batches_skip_bad_files_and_resume_exactly(tmp_path):
    paths, labels = make_set(tmp_path)
    loader = ImageBatches(paths, labels, size=16, batch_size=5, seed=1, num_workers=2)
    batches = list(loader.iterate(epoch=1))
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 4]  # bad files replaced: batches keep their size
    assert sorted(s.path for s in loader.skipped) == sorted([paths[5], paths[17]])
    assert {s.reason for s in loader.skipped} == {"zero-byte file"}
    for x, y in batches:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 16, 16)
        red = x[:, 0].float().mean((1, 2)) > x[:, 2].float().mean((1, 2))
        assert torch.equal(red, y == 0)  # every label matches its (substituted) image
    resumed = ImageBatches(paths, labels, size=16, batch_size=5, seed=1, num_workers=0)
    tail = list(resumed.iterate(epoch=1, start=2))
    for (x1, y1), (x2, y2) in zip(batches[2:], tail, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other_epoch = next(iter(resumed.iterate(epoch=2)))
    assert not torch.equal(other_epoch[0], batches[0][0])


def test_image_dataset_items_and_errors(tmp_path):
    paths, labels = make_set(tmp_path, n=6, bad=(1,))
    ds = ImageDataset(paths, labels, size=16, augment=False)
    x, y = ds[1]  # bad file: the next sample (index 2) stands in
    assert x.shape == (3, 16, 16) and int(y) == 0 and ds.skipped == {paths[1]: "zero-byte file"}
    with pytest.raises(DataError, match="2 paths but 1 labels"):
        ImageDataset(paths[:2], [0], size=8)
    with pytest.raises(ConfigError):
        ImageDataset(paths, labels, size=8, scale=(0.5, 2.0))
    all_bad = ImageDataset([str(tmp_path / "1.jpg")] * 3, [0, 1, 0], size=8)
    with pytest.raises(DataError, match="no readable image"):
        all_bad[0]


def test_image_folder_dataset(tmp_path):
    tree(tmp_path / "flat", {"cat": 2, "dog": 3})
    ds = ImageFolderDataset(tmp_path / "flat", size=8)
    assert ds.classes == ["cat", "dog"] and len(ds) == 5
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    tree(tmp_path / "split" / "train", {"cat": 2, "dog": 1})
    tree(tmp_path / "split" / "valid", {"dog": 2})
    valid = ImageFolderDataset(tmp_path / "split", size=8, split="valid", augment=False)
    assert valid.classes == ["cat", "dog"] and valid.labels.tolist() == [1, 1]
    with pytest.raises(ConfigError, match="no 'test' split"):
        ImageFolderDataset(tmp_path / "split", size=8, split="test")


def test_learner_trains_on_streamed_images(tmp_path):
    from torch import nn

    from deepfit import Learner

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(48):
        label = i % 2
        a = rng.integers(0, 120, (28, 36, 3)).astype(np.uint8)
        a[..., 2 * label] += 120  # red or blue tint under noise
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(a).save(p, quality=90)
        paths.append(str(p))
        labels.append(label)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.head = nn.Linear(8, 2)

        def forward(self, x):  # x: (B, 3, S, S) uint8
            h = torch.relu(self.conv(x.float() / 255 - 0.5))
            return self.head(h.mean((2, 3)))

    torch.manual_seed(0)
    train = ImageBatches(paths, labels, size=16, batch_size=8, num_workers=0, seed=0)
    valid = ImageBatches(paths, labels, size=16, batch_size=16, augment=False, num_workers=0)
    learn = Learner(Net(), train=train, valid=valid, metrics=["accuracy"], lr=0.03, progress=False, compile=False)
    history = learn.fit(6)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid_accuracy"] >= 0.9
    # a map-style ImageDataset goes through the engine's own DataLoader path
    dataset = ImageDataset(paths, labels, size=16, seed=0)
    learn = Learner(Net(), train=dataset, valid=valid, metrics=["accuracy"], lr=0.03, batch_size=8,
                    progress=False, compile=False)
    assert learn.fit(1)[-1]["valid_accuracy"] > 0.0


def test_decode_images_disk_cache(tmp_path, monkeypatch):
    import deepfit.data.images.cache as cache_module

    paths = [solid(tmp_path / "img" / f"{i}.png", (i * 20, 0, 0)) for i in range(5)]
    (tmp_path / "img" / "bad.jpg").write_text("no")
    paths.insert(2, str(tmp_path / "img" / "bad.jpg"))
    first = decode_images(paths, 8, workers=0, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_module, "decode_tensor", fail)
    again = decode_images(paths, 8, workers=0, cache_dir=tmp_path / "cache")
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and np.array_equal(first[2], again[2])
    os.utime(paths[0], ns=(1, 1))  # a changed file invalidates the cache
    with pytest.raises(AssertionError, match="decoded although cached"):
        decode_images(paths, 8, workers=0, cache_dir=tmp_path / "cache")


def test_learner_resume_mid_epoch_is_exact_with_streamed_images(tmp_path):
    from torch import nn

    from deepfit import Callback, Learner
    from deepfit.errors import CallbackError

    paths, labels = make_set(tmp_path, n=16, bad=(3,))

    class Crash(Callback):
        def on_batch_end(self, learner):
            if learner.step == 3:
                raise RuntimeError("simulated crash")

    def learner(out, workers, callbacks=(), init_seed=0):
        torch.manual_seed(init_seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2))
        wrapped = nn.Sequential(_ToFloat(), model)
        train = ImageBatches(paths, labels, size=12, batch_size=4, seed=5, num_workers=workers)
        return Learner(wrapped, train=train, lr=0.01, out_dir=out, checkpoint_every=2, progress=False,
                       compile=False, callbacks=list(callbacks))

    full = learner(tmp_path / "full", workers=0)
    full.fit(2)
    crashed = learner(tmp_path / "run", workers=2, callbacks=[Crash()])
    with pytest.raises(CallbackError, match="simulated crash"):
        crashed.fit(2)
    resumed = learner(tmp_path / "run", workers=0, init_seed=7)
    resumed.fit(2, resume=tmp_path / "run" / "last.ckpt")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


class _ToFloat(torch.nn.Module):
    def forward(self, x):
        return x.float() / 255


def test_decompression_bomb_is_skipped_not_decoded(tmp_path, backend, monkeypatch):
    from PIL import Image as PILImage

    path = solid(tmp_path / "big.jpg", size=(64, 48), fmt="JPEG")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 64x48 = 3072 > 2 x 1000
    with pytest.raises(ImageError) as info:
        decode_image(path, 16)
    assert info.value.reason.startswith("too large")


# ----------------------------------------------------------------------------- reused worker batch buffers


def _reference_batches(paths, labels, **kw):
    """The batches of epoch 1 decoded in this process (no worker, no buffer reuse)."""
    return [tuple(t.clone() for t in b) for b in ImageBatches(paths, labels, num_workers=0, **kw).iterate(1)]


def test_worker_buffers_are_reused_only_once_released(tmp_path):
    paths, labels = make_set(tmp_path, n=40)
    kw = dict(size=16, batch_size=4, seed=3)
    want = _reference_batches(paths, labels, **kw)
    loader = ImageBatches(paths, labels, num_workers=1, **kw)
    storages = set()
    for (x, y), (wx, wy) in zip(loader.iterate(1), want, strict=True):  # each batch dropped when done
        assert torch.equal(x, wx) and torch.equal(y, wy)
        storages.add(x.untyped_storage().data_ptr())
    assert len(storages) <= 1 * 2 + 2  # a small ring (workers x prefetch + 2), not one buffer per batch
    kept = list(loader.iterate(1))  # every batch kept: none may be overwritten by a later one
    assert len({x.untyped_storage().data_ptr() for x, _ in kept}) == len(kept)
    assert storages & {x.untyped_storage().data_ptr() for x, _ in kept}  # the next pass reused the ring
    for _ in loader.iterate(2):  # nor by the next pass, which refills the same ring
        pass
    for (x, y), (wx, wy) in zip(kept, want, strict=True):
        assert torch.equal(x, wx) and torch.equal(y, wy)
    assert pickle.loads(pickle.dumps(loader))._ring is None
    # views and numpy arrays of a batch keep it too; unlabelled images come back alone
    unlabelled = ImageBatches(paths, None, num_workers=1, **kw)
    views, arrays = [], []
    for i, (x,) in enumerate(unlabelled.iterate(1)):
        (views if i % 2 else arrays).append(x[1:3] if i % 2 else x.numpy())
    for i, (wx, _) in enumerate(want):
        got = views[i // 2] if i % 2 else torch.from_numpy(arrays[i // 2])
        assert torch.equal(got, wx[1:3] if i % 2 else wx)


def test_worker_buffers_with_two_workers_and_an_early_stop(tmp_path):
    paths, labels = make_set(tmp_path, n=40)
    kw = dict(size=16, batch_size=4, seed=3)
    want = _reference_batches(paths, labels, **kw)
    loader = ImageBatches(paths, labels, num_workers=2, **kw)
    for _ in range(2):
        it = loader.iterate(1)
        first = [next(it) for _ in range(3)]
        it.close()  # stopped mid-epoch: its workers go, the kept batches stay intact
        for (x, y), (wx, wy) in zip(first, want[:3], strict=True):
            assert torch.equal(x, wx) and torch.equal(y, wy)
    for (x, y), (wx, wy) in zip(loader.iterate(1), want, strict=True):
        assert torch.equal(x, wx) and torch.equal(y, wy)
    assert sorted(s.path for s in loader.skipped) == sorted([paths[5], paths[17]])


def test_worker_crash_and_worker_errors_surface(tmp_path, monkeypatch):
    paths, labels = make_set(tmp_path, n=16, bad=())
    calls = {"n": 0}
    real = ImageDataset.get_batch

    def crash_on_third(self, indices, out=None):
        calls["n"] += 1
        if calls["n"] == 3:
            os._exit(3)  # the worker process dies (forked: it has its own copy of the counter)
        return real(self, indices, out)

    monkeypatch.setattr(ImageDataset, "get_batch", crash_on_third)
    loader = ImageBatches(paths, labels, size=16, batch_size=4, num_workers=1, seed=0)
    with pytest.raises(RuntimeError, match="DataLoader worker .* exited unexpectedly"):
        list(loader.iterate(0))
    monkeypatch.setattr(ImageDataset, "get_batch", real)
    all_bad = ImageBatches([str(tmp_path / "none.jpg")] * 8, [0] * 8, size=16, batch_size=4, num_workers=1)
    with pytest.raises(DataError, match="no readable image"):
        list(all_bad.iterate(0))


def test_channels_last_resize_gives_the_old_pixels(tmp_path):
    """The resize writes channels-last (skipping torch's repacking): same pixels as planes out."""
    import torch.nn.functional as F

    import deepfit.data.images.decode as decode
    import deepfit.data.images.stream as stream

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (90, 120, 3)).astype(np.uint8)
    a[20:60, 30:100] = (200, 40, 90)
    path = str(tmp_path / "a.png")
    Image.fromarray(a).save(path)

    def old(box, size, flip=False):  # the previous code: (1, 3, h, w) from a permuted view
        x0, y0, x1, y1 = box
        t = torch.from_numpy(np.ascontiguousarray(a[y0:y1, x0:x1])).permute(2, 0, 1)[None]
        out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        return out.flip(-1) if flip else out

    for size in (16, 57, 90, 224):
        want = old((15, 0, 105, 90), size)
        assert torch.equal(torch.from_numpy(decode_image(path, size)).permute(2, 0, 1), want)
        dest = torch.zeros(3, size, size, dtype=torch.uint8)
        got = decode.decode_tensor(path, size, lambda w, h: (3, 7, 50, 61), flip=True, dest=dest)
        assert got is dest and torch.equal(dest, old((3, 7, 50, 61), size, flip=True))
    ds = ImageDataset([path] * 3, [0, 1, 2], size=32, seed=4)
    ds.set_epoch(2)
    x, _ = ds[1]
    assert x.is_contiguous()
    r = stream._sample_rng(4, 2, 1, 0)
    flip = r.random() < 0.5
    assert torch.equal(x, old(decode._rrc_box(r, ds.scale, ds.ratio)(120, 90), 32, flip))
    batch, _ = ds.get_batch([1, 0])
    assert torch.equal(batch[0][0], x) and batch[0].is_contiguous()
