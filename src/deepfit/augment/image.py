"""Batched image augmentation in torch, on the training device, with one ``grid_sample`` per batch.

Every geometric change — horizontal/vertical flip, random resized crop, rotation, zoom,
translation and shear — is folded into ONE 2x3 affine matrix per sample, and the whole batch is
resampled with a single :func:`torch.nn.functional.grid_sample` call (bilinear). Then colour:
brightness, contrast and saturation, drawn per sample. Then, optionally, mixup or cutmix (which
also mixes the labels: see :class:`MixBatch`). No per-sample Python, no torchvision, no kornia.

Randomness comes from torch's generator for the device (or one you pass), which ``Learner``
seeds and stores in checkpoints, so augmented runs are reproducible and resume exactly.

Inputs are float images in ``[0, 1]`` of shape ``(B, C, H, W)``; uint8 batches are converted.
Normalisation (``(x - mean) / std``) is a separate, deterministic step (:class:`Normalize`)
that belongs to the model, because prediction needs it too.

Example:
    >>> import torch
    >>> aug = ImageAugment(rotate=10, translate=0.1, brightness=0.2)
    >>> aug(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.errors import ConfigError

__all__ = ["ImageAugment", "MixBatch", "MixedLoss", "AugmentedImages", "Normalize", "affine_matrices",
           "apply_affine", "default_augment"]


def _pair(value: float | tuple[float, float], name: str, *, low: float = -math.inf) -> tuple[float, float]:
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not low <= lo <= hi:
        raise ConfigError(f"{name} must be (low, high) with {low} <= low <= high, got {value!r}")
    return float(lo), float(hi)


def affine_matrices(
    *,
    batch: int,
    height: int,
    width: int,
    angle: Tensor | None = None,
    scale: Tensor | None = None,
    shear: Tensor | None = None,
    translate: Tensor | None = None,
    flip_x: Tensor | None = None,
    flip_y: Tensor | None = None,
    crop: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The ``(B, 2, 3)`` matrices for :func:`torch.nn.functional.affine_grid` (``align_corners=False``).

    Each output pixel ``p`` (in pixel units about the image centre) reads the input at
    ``A p + t``. The output is the input seen through, in order: the crop window ``crop``
    (``(B, 4)``: centre x, centre y, width, height as fractions of the image; a random resized
    crop), then the zoom ``scale`` (> 1 magnifies), rotation ``angle`` (degrees,
    counter-clockwise on screen), shear ``shear`` (degrees, along x), translation ``translate``
    (``(B, 2)`` fractions of width/height) and flips (``flip_x``/``flip_y``: bool ``(B,)``).
    Every argument is per sample; ``None`` means identity. Working in pixel units keeps
    rotations of non-square images undistorted.
    """
    f32 = dict(device=device, dtype=torch.float32)
    a = torch.eye(2, **f32).expand(batch, 2, 2).clone()  # (B, 2, 2): output (px) -> input (px)
    t = torch.zeros(batch, 2, **f32)  # (B, 2) in pixels
    # Composition, from the output backwards: flip, then shear/rotation/zoom, then translation, then crop.
    if flip_x is not None or flip_y is not None:
        fx = 1.0 - 2.0 * flip_x.to(**f32) if flip_x is not None else torch.ones(batch, **f32)
        fy = 1.0 - 2.0 * flip_y.to(**f32) if flip_y is not None else torch.ones(batch, **f32)
        a = a * torch.stack([fx, fy], dim=1).unsqueeze(1)  # scale columns: x_out -> -x_out
    if shear is not None:
        sh = torch.tan(torch.deg2rad(shear.to(**f32)))
        m = torch.eye(2, **f32).expand(batch, 2, 2).clone()
        m[:, 0, 1] = sh
        a = m @ a
    if angle is not None:
        # Rows grow downwards, so with (x, y) pixel coordinates the matrix [[cos, -sin], [sin, cos]]
        # (the output pixel reading the input) turns the picture counter-clockwise on screen.
        r = torch.deg2rad(angle.to(**f32))
        cos, sin = torch.cos(r), torch.sin(r)
        m = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (B, 2, 2)
        a = m @ a
    if scale is not None:
        a = a / scale.to(**f32).view(batch, 1, 1)
    if translate is not None:
        t = t - translate.to(**f32) * torch.tensor([width, height], **f32)
    if crop is not None:
        crop = crop.to(**f32)
        size = crop[:, 2:4]  # (B, 2) window size as fractions
        centre = (crop[:, 0:2] - 0.5) * torch.tensor([width, height], **f32)  # (B, 2) px from the centre
        a = a * size.unsqueeze(2)  # rows scaled: x_in = w_frac * x
        t = t * size + centre
    # Pixel units -> normalised [-1, 1] units: theta = D^-1 (A, t) D with D = diag(W/2, H/2).
    half = torch.tensor([width / 2, height / 2], **f32)
    theta = torch.empty(batch, 2, 3, **f32)
    theta[:, :, :2] = a * half.view(1, 1, 2) / half.view(1, 2, 1)
    theta[:, :, 2] = t / half
    return theta


def apply_affine(x: Tensor, theta: Tensor, *, padding: str = "zeros", mode: str = "bilinear") -> Tensor:
    """Resample ``x`` (B, C, H, W) through ``theta`` (B, 2, 3): one ``affine_grid`` + ``grid_sample``."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


class ImageAugment(nn.Module):
    """Random flips, resized crop, affine (rotate/zoom/translate/shear) and colour jitter, per sample.

    All geometric parts are composed into one affine matrix per sample and applied with one
    ``grid_sample`` for the whole batch (see :func:`affine_matrices`). ``p_affine`` of the
    samples get the random rotation/zoom/translation/shear; the rest keep only their flip and
    crop. Colour: brightness ``x * b``, contrast ``(x - m) * c + m`` (``m`` the image's mean
    grey), saturation ``g + (x - g) * s`` (``g`` the pixel's grey), with ``b, c, s`` uniform
    on ``1 +/- amount``; the result is clamped to ``[0, 1]``.

    Args:
        flip: probability of a horizontal flip. 0 by default: flips change the meaning of
            text, digits and many diagrams; turn them on for photos of objects.
        vflip: probability of a vertical flip (aerial and microscope images).
        crop_scale: ``(low, high)`` share of the image area a random resized crop keeps
            (``None``: no crop). Aspect ratio is drawn log-uniformly in ``crop_ratio``.
        rotate: largest rotation in degrees.
        zoom: ``(low, high)`` zoom factor range (> 1 magnifies).
        translate: largest shift as a fraction of the image size.
        shear: largest shear angle in degrees.
        p_affine: share of samples that get the rotate/zoom/translate/shear part.
        brightness, contrast, saturation: jitter amounts (0 = off).
        padding: ``grid_sample`` padding: ``"zeros"``, ``"border"`` or ``"reflection"``.
        generator: a ``torch.Generator`` on the data's device; default: torch's global one.

    Example:
        >>> import torch
        >>> aug = ImageAugment(flip=0.5, crop_scale=(0.35, 1.0), rotate=10, contrast=0.2)
        >>> aug(torch.rand(2, 3, 64, 48)).shape
        torch.Size([2, 3, 64, 48])
    """

    def __init__(
        self,
        *,
        flip: float = 0.0,
        vflip: float = 0.0,
        crop_scale: tuple[float, float] | None = None,
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        rotate: float = 0.0,
        zoom: tuple[float, float] = (1.0, 1.0),
        translate: float = 0.0,
        shear: float = 0.0,
        p_affine: float = 1.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        padding: str = "zeros",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, p in (("flip", flip), ("vflip", vflip), ("p_affine", p_affine)):
            if not 0 <= p <= 1:
                raise ConfigError(f"{name} is a probability in [0, 1], got {p}")
        for name, v in (("rotate", rotate), ("translate", translate), ("shear", shear),
                        ("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if v < 0:
                raise ConfigError(f"{name} must be >= 0, got {v}")
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if v >= 1:
                raise ConfigError(f"{name} must be < 1 (a factor drawn in 1 +/- {name}), got {v}")
        if padding not in ("zeros", "border", "reflection"):
            raise ConfigError(f"padding must be 'zeros', 'border' or 'reflection', got {padding!r}")
        self.flip, self.vflip = float(flip), float(vflip)
        self.crop_scale = _pair(crop_scale, "crop_scale", low=1e-3) if crop_scale is not None else None
        if self.crop_scale is not None and self.crop_scale[1] > 1:
            raise ConfigError(f"crop_scale must lie in (0, 1], got {crop_scale!r}")
        self.crop_ratio = _pair(crop_ratio, "crop_ratio", low=1e-3)
        self.rotate, self.translate, self.shear = float(rotate), float(translate), float(shear)
        self.zoom = _pair(zoom, "zoom", low=1e-3)
        self.p_affine = float(p_affine)
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.padding = padding
        self.generator = generator

    def extra_repr(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in ("flip", "vflip", "crop_scale", "rotate", "zoom", "translate",
                                                     "shear", "p_affine", "brightness", "contrast", "saturation")]
        return ", ".join(parts)

    def config(self) -> dict:
        """The constructor arguments as plain JSON (the generator excepted)."""
        return {"flip": self.flip, "vflip": self.vflip, "crop_scale": self.crop_scale, "crop_ratio": self.crop_ratio,
                "rotate": self.rotate, "zoom": self.zoom, "translate": self.translate, "shear": self.shear,
                "p_affine": self.p_affine, "brightness": self.brightness, "contrast": self.contrast,
                "saturation": self.saturation, "padding": self.padding}

    @property
    def geometric(self) -> bool:
        return bool(self.flip or self.vflip or self.crop_scale or self.rotate or self.translate or self.shear
                    or self.zoom != (1.0, 1.0))

    def _uniform(self, n: int, lo: float, hi: float, dev: torch.device) -> Tensor:
        return torch.rand(n, device=dev, generator=self.generator) * (hi - lo) + lo

    def random_matrices(self, batch: int, height: int, width: int, device: torch.device) -> Tensor:
        """Draw one ``(B, 2, 3)`` affine matrix per sample (see the class docstring)."""
        g, dev = self.generator, device
        flip_x = torch.rand(batch, device=dev, generator=g) < self.flip if self.flip else None
        flip_y = torch.rand(batch, device=dev, generator=g) < self.vflip if self.vflip else None
        crop = None
        if self.crop_scale is not None:
            area = self._uniform(batch, *self.crop_scale, dev)
            log_r = self._uniform(batch, math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]), dev)
            ratio = torch.exp(log_r)  # width / height of the window, relative to the image's
            w = torch.sqrt(area * ratio).clamp(max=1.0)
            h = torch.sqrt(area / ratio).clamp(max=1.0)
            cx = w / 2 + torch.rand(batch, device=dev, generator=g) * (1 - w)
            cy = h / 2 + torch.rand(batch, device=dev, generator=g) * (1 - h)
            crop = torch.stack([cx, cy, w, h], dim=1)  # (B, 4)
        on = (torch.rand(batch, device=dev, generator=g) < self.p_affine).float() if self.p_affine < 1 else None

        def gated(v: Tensor, neutral: float) -> Tensor:
            return v if on is None else neutral + (v - neutral) * on

        angle = gated(self._uniform(batch, -self.rotate, self.rotate, dev), 0.0) if self.rotate else None
        shear = gated(self._uniform(batch, -self.shear, self.shear, dev), 0.0) if self.shear else None
        scale = None
        if self.zoom != (1.0, 1.0):
            log_z = self._uniform(batch, math.log(self.zoom[0]), math.log(self.zoom[1]), dev)
            scale = gated(torch.exp(log_z), 1.0)
        translate = None
        if self.translate:
            translate = self._uniform(2 * batch, -self.translate, self.translate, dev).view(batch, 2)
            translate = translate if on is None else translate * on.view(batch, 1)
        return affine_matrices(batch=batch, height=height, width=width, angle=angle, scale=scale, shear=shear,
                               translate=translate, flip_x=flip_x, flip_y=flip_y, crop=crop, device=dev)

    def color(self, x: Tensor) -> Tensor:
        """Brightness, contrast and saturation jitter of a ``[0, 1]`` batch (B, C, H, W)."""
        b, dev = x.shape[0], x.device
        if self.brightness:
            x = x * self._uniform(b, 1 - self.brightness, 1 + self.brightness, dev).view(b, 1, 1, 1)
        if self.contrast or self.saturation:
            if x.shape[1] == 3:
                grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # (B, 1, H, W)
            else:
                grey = x.mean(dim=1, keepdim=True)
            if self.contrast:
                m = grey.mean(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
                c = self._uniform(b, 1 - self.contrast, 1 + self.contrast, dev).view(b, 1, 1, 1)
                x = (x - m) * c + m
                grey = (grey - m) * c + m
            if self.saturation and x.shape[1] == 3:
                s = self._uniform(b, 1 - self.saturation, 1 + self.saturation, dev).view(b, 1, 1, 1)
                x = grey + (x - grey) * s
        return x.clamp(0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ConfigError(f"ImageAugment expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        B, _, H, W = x.shape
        if self.geometric:
            x = apply_affine(x, self.random_matrices(B, H, W, x.device), padding=self.padding)
        if self.brightness or self.contrast or self.saturation:
            x = self.color(x)
        return x


class MixBatch(nn.Module):
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of a batch with a shuffled copy of itself.

    ``forward(x)`` returns the mixed batch and remembers ``(perm, lam)``: the label of sample
    ``i`` becomes ``lam * y[i] + (1 - lam) * y[perm[i]]`` (use :class:`MixedLoss`). ``lam`` is
    drawn from Beta(alpha, alpha) once per batch; for CutMix it is then set to the exact share of
    the pixels that were kept. ``p`` is the probability that a batch is mixed at all.

    Example:
        >>> import torch
        >>> mix = MixBatch("cutmix", alpha=1.0)
        >>> mix(torch.rand(4, 3, 8, 8)).shape
        torch.Size([4, 3, 8, 8])
    """

    def __init__(self, kind: str = "mixup", *, alpha: float = 0.2, p: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if kind not in ("mixup", "cutmix"):
            raise ConfigError(f"mix kind must be 'mixup' or 'cutmix', got {kind!r}")
        if alpha <= 0:
            raise ConfigError(f"alpha must be > 0, got {alpha}")
        if not 0 <= p <= 1:
            raise ConfigError(f"p is a probability in [0, 1], got {p}")
        self.kind, self.alpha, self.p, self.generator = kind, float(alpha), float(p), generator
        self.state: tuple[Tensor, float] | None = None

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, alpha={self.alpha}, p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        g, dev, B = self.generator, x.device, x.shape[0]
        # One host read per batch (the mix decision and lam are scalars). Beta draws use torch's
        # global RNG, which Learner seeds and checkpoints.
        if float(torch.rand((), device=dev, generator=g)) >= self.p:
            self.state = None
            return x
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        perm = torch.randperm(B, device=dev, generator=g)
        if self.kind == "mixup":
            out = lam * x + (1 - lam) * x[perm]
        else:
            H, W = x.shape[-2:]
            cut = math.sqrt(1 - lam)
            ch, cw = int(round(H * cut)), int(round(W * cut))
            cy, cx = int(torch.randint(H, (), device=dev, generator=g)), int(torch.randint(W, (), device=dev, generator=g))
            y0, y1 = max(cy - ch // 2, 0), min(cy + (ch + 1) // 2, H)
            x0, x1 = max(cx - cw // 2, 0), min(cx + (cw + 1) // 2, W)
            out = x.clone()
            out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (H * W)
        self.state = (perm, lam)
        return out


class MixedLoss:
    """``lam * loss(out, y) + (1 - lam) * loss(out, y[perm])`` with the ``(perm, lam)`` of the
    last :class:`MixBatch` call in training; the plain loss otherwise (and in evaluation)."""

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor], mix: MixBatch) -> None:
        self.loss, self.mix = loss, mix

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        state = self.mix.state
        if state is None or not self.mix.training or len(state[0]) != len(target):
            return self.loss(output, target)
        perm, lam = state
        self.mix.state = None  # one use per batch: evaluation never sees a stale mix
        return lam * self.loss(output, target) + (1 - lam) * self.loss(output, target[perm])


class Normalize(nn.Module):
    """uint8 or ``[0, 1]`` float images → ``(x - mean) / std`` per channel (mean/std in ``[0, 1]`` units).

    ``mean`` and ``std`` are non-persistent buffers: they are model config (saved in the
    artifact's JSON), not weights.

    Example:
        >>> import torch
        >>> Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)).max().item()
        2.0
    """

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ConfigError(f"mean and std need one value per channel, got {mean} and {std}")
        if min(std) <= 0:
            raise ConfigError(f"std must be > 0 per channel, got {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return (x - self.mean) / self.std


class AugmentedImages(nn.Module):
    """``model(mix(augment(x)), *rest)`` in training mode, ``model(x, *rest)`` in eval mode.

    Like :class:`deepfit.augment.signal.Augmented`, for images: the augmentation holds no
    parameters or buffers, so the state dict is the inner model's with a ``model.`` prefix and
    ``.model`` is the bare model to save or deploy. The model must accept uint8 or ``[0, 1]``
    float images (e.g. it starts with :class:`Normalize`). With ``mix``, train with
    ``MixedLoss(loss, wrapper.mix)``.

    Example:
        >>> import torch
        >>> net = AugmentedImages(torch.nn.Flatten(), ImageAugment(rotate=10))
        >>> net.eval()(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 48])
    """

    def __init__(self, model: nn.Module, augment: nn.Module | None, mix: MixBatch | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"AugmentedImages needs an nn.Module to wrap, got {type(model).__name__}")
        for part in (augment, mix):
            if isinstance(part, nn.Module) and (any(True for _ in part.parameters()) or any(True for _ in part.buffers())):
                raise ConfigError("the augmentation must hold no parameters or buffers (it is not saved with the model)")
        self.model = model
        self.augment = augment
        self.mix = mix

    def forward(self, x: Tensor, *rest: Tensor) -> Tensor:
        if self.training:
            if x.dtype == torch.uint8:
                x = x.float() / 255.0
            if self.augment is not None:
                x = self.augment(x)
            if self.mix is not None:
                x = self.mix(x)
                if self.mix.state is not None and rest:  # the other inputs of a row travel with its image
                    perm, lam = self.mix.state
                    rest = tuple(r if r.dtype in (torch.int64, torch.int32) else lam * r + (1 - lam) * r[perm]
                                 for r in rest)
        return self.model(x, *rest)


def default_augment(size: int, *, flip: bool = False) -> ImageAugment:
    """deepfit's default augmentation for square images of side ``size`` (see docs/images.md).

    Tiny images (<= 32 px: digits, icons, CIFAR-like) get small affine jitter — rotation 10°,
    zoom 0.9-1.1, shift 8%, shear 8° — and mild brightness/contrast; no random crop (it would
    cut away a large share of the few pixels). Larger images also get a random resized crop
    keeping 35-100% of the area and saturation jitter. Horizontal flips only with ``flip=True``.

    Example:
        >>> default_augment(32).rotate
        10.0
    """
    if size <= 32:
        return ImageAugment(flip=0.5 if flip else 0.0, rotate=10.0, zoom=(0.9, 1.1), translate=0.08, shear=8.0,
                            p_affine=0.9, brightness=0.2, contrast=0.2, padding="zeros")
    return ImageAugment(flip=0.5 if flip else 0.0, crop_scale=(0.35, 1.0), rotate=10.0, zoom=(1.0, 1.1),
                        translate=0.0, shear=5.0, p_affine=0.75, brightness=0.2, contrast=0.2, saturation=0.2,
                        padding="reflection")
