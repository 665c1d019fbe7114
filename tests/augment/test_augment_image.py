"""Batched image augmentation: exact geometry on known images, labels kept, reproducible, mixing."""

import math

import pytest
import torch
import torch.nn.functional as F

from deepfit.augment.image import (AugmentedImages, ImageAugment, MixBatch, MixedLoss, Normalize, affine_matrices,
                                   apply_affine, default_augment)
from deepfit.errors import ConfigError


def _affine(x, **kw):
    B, _, H, W = x.shape
    kw = {k: (torch.full((B,), v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in kw.items()}
    return apply_affine(x, affine_matrices(batch=B, height=H, width=W, **kw))


def test_flips_via_the_affine_equal_torch_flip():
    x = torch.rand(3, 3, 5, 7)
    yes = torch.ones(3, dtype=torch.bool)
    torch.testing.assert_close(_affine(x, flip_x=yes), x.flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(_affine(x, flip_y=yes), x.flip(-2), atol=1e-5, rtol=0)
    torch.testing.assert_close(_affine(x, flip_x=yes, flip_y=yes), x.flip(-1, -2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_rotations_by_quarter_turns_equal_rot90(k):
    x = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(_affine(x, angle=90.0 * k), torch.rot90(x, k, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_whole_pixel_translation_shifts_and_fills_zeros():
    x = torch.rand(2, 1, 5, 8)
    t = torch.tensor([[2 / 8, -1 / 5]]).expand(2, 2)  # 2 px right, 1 px up
    out = _affine(x, translate=t)
    torch.testing.assert_close(out[..., :4, 2:], x[..., 1:, :-2], atol=1e-5, rtol=0)
    assert out[..., :, :2].abs().max() == 0 and out[..., 4, :].abs().max() == 0


def test_zoom_two_of_a_centre_crop_matches_the_crop_window():
    x = torch.rand(1, 3, 8, 8)
    zoomed = _affine(x, scale=2.0)  # magnify 2x about the centre
    crop = _affine(x, crop=torch.tensor([[0.5, 0.5, 0.5, 0.5]]))  # the central half, stretched
    torch.testing.assert_close(zoomed, crop, atol=1e-5, rtol=0)
    # ... and equals bilinear upsampling of the central 4x4 block inside the image
    up = F.interpolate(x[..., 2:6, 2:6], size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(zoomed[..., 1:7, 1:7], up[..., 1:7, 1:7], atol=1e-5, rtol=0)


def test_augmentation_keeps_shapes_range_and_each_sample_its_own_pixels():
    # Sample i is the constant image v_i: any geometric change of it (border padding) is v_i
    # again, so a sample never receives another sample's pixels and labels stay aligned.
    values = torch.linspace(0.1, 0.9, 8)
    x = values.view(8, 1, 1, 1).expand(8, 3, 24, 20).contiguous()
    aug = ImageAugment(flip=0.5, vflip=0.5, crop_scale=(0.3, 1.0), rotate=30, zoom=(0.8, 1.3), translate=0.2,
                       shear=10, padding="border", generator=torch.Generator().manual_seed(0))
    out = aug(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    colour = ImageAugment(brightness=0.4, contrast=0.4, saturation=0.4, generator=torch.Generator().manual_seed(0))
    jittered = colour(torch.rand(8, 3, 16, 16))
    assert jittered.min() >= 0 and jittered.max() <= 1


def test_augmentation_changes_images_and_is_reproducible_with_a_seed():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    make = lambda: ImageAugment(rotate=20, translate=0.1, brightness=0.3, generator=torch.Generator().manual_seed(3))  # noqa: E731
    a, b = make()(x), make()(x)
    assert torch.equal(a, b)
    assert (a - x.float() / 255).abs().mean() > 0.01


def test_augmented_wrapper_only_in_training_and_state_dict_is_the_models():
    inner = torch.nn.Sequential(Normalize([0.5] * 3, [0.5] * 3), torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    net = AugmentedImages(inner, ImageAugment(rotate=45, generator=torch.Generator().manual_seed(0)))
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(net.eval()(x), inner(x))
    assert not torch.equal(net.train()(x), inner(x))
    assert set(net.state_dict()) == {f"model.{k}" for k in inner.state_dict()}


def test_mixup_loss_is_the_mixture_of_the_two_labels_losses():
    torch.manual_seed(0)
    mix = MixBatch("mixup", alpha=0.4)
    x = torch.rand(6, 3, 4, 4)
    mixed = mix(x)
    perm, lam = mix.state
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    out, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    expected = lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[perm])
    torch.testing.assert_close(MixedLoss(F.cross_entropy, mix)(out, y), expected)
    assert mix.state is None  # used once
    assert float(MixedLoss(F.cross_entropy, mix)(out, y)) == pytest.approx(float(F.cross_entropy(out, y)))


def test_cutmix_lambda_is_the_share_of_pixels_kept():
    torch.manual_seed(1)
    mix = MixBatch("cutmix", alpha=1.0)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 10, 10).contiguous()
    out = mix(x)
    perm, lam = mix.state
    kept = (out == x).float().mean(dim=(1, 2, 3))
    moved = perm != torch.arange(4)
    assert torch.allclose(kept[moved], torch.full_like(kept[moved], lam))


def test_defaults_do_not_flip_and_arguments_are_checked():
    assert default_augment(32).flip == 0 and default_augment(128).flip == 0
    assert default_augment(128, flip=True).flip == 0.5
    assert default_augment(128).crop_scale is not None and default_augment(32).crop_scale is None
    with pytest.raises(ConfigError, match="probability"):
        ImageAugment(flip=1.5)
    with pytest.raises(ConfigError, match="padding"):
        ImageAugment(padding="wrap")
    with pytest.raises(ConfigError, match="crop_scale"):
        ImageAugment(crop_scale=(0.5, 2.0))
    with pytest.raises(ConfigError, match="B, C, H, W"):
        ImageAugment()(torch.rand(3, 8, 8))


def test_normalize_uses_channel_statistics():
    norm = Normalize([0.2, 0.4, 0.6], [0.1, 0.2, 0.3])
    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1) + torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), torch.ones(1, 3, 1, 1))
    assert math.isclose(float(norm(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0, 0]), -2.0, rel_tol=1e-6)
