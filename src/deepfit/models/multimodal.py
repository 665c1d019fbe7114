"""ImageTableModel: an image backbone, optionally joined by the other columns of the row, and a head.

The image (uint8 or ``[0, 1]`` float, ``(B, 3, S, S)``) is normalised with the training set's
channel statistics and encoded by a backbone (``deepfit.models.resnet``) into a feature vector.
The row's other columns arrive as the three arrays of
:class:`~deepfit.features.preprocessor.TablePreprocessor` (numbers, category codes, hashed text
tokens); a small MLP encodes them (numbers as they are — already quantile-normal scaled —,
categories through one embedding table, texts as mean-pooled token embeddings). Both vectors
are concatenated and a linear head maps them to the outputs. Without table columns it is
simply ``head(backbone(normalise(image)))``. One model, trained end to end.

Example:
    >>> import torch
    >>> spec = {"n_num": 2, "num_bins": [None, None], "cat_cardinalities": [4], "n_text": 0, "text_buckets": 1024}
    >>> m = ImageTableModel(n_outputs=3, backbone="small_cnn", backbone_config={"widths": [8, 16]},
    ...                     mean=[0.5] * 3, std=[0.25] * 3, table_spec=spec)
    >>> img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    >>> m(img, torch.randn(2, 2), torch.randint(0, 4, (2, 1)), torch.zeros(2, 0, 64, dtype=torch.long)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from deepfit.augment.image import Normalize
from deepfit.errors import ConfigError
from deepfit.models.resnet import build_backbone

__all__ = ["ImageTableModel", "TableEncoder"]

TEXT_DIM = 32


class TableEncoder(nn.Module):
    """The non-image columns of a row → a ``width`` vector (numbers, category embeddings, text bags → MLP)."""

    def __init__(self, spec: dict, *, width: int = 128, d_embed: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_num = int(spec["n_num"])
        cards = [int(c) for c in spec["cat_cardinalities"]]
        self.n_cat, self.n_text = len(cards), int(spec["n_text"])
        offsets = torch.tensor([0, *cards[:-1]], dtype=torch.long).cumsum(0)[: len(cards)]
        self.register_buffer("cat_offsets", offsets, persistent=False)  # (C,)
        self.cat_embed = nn.Embedding(sum(cards), d_embed) if cards else None
        if self.cat_embed is not None:
            nn.init.uniform_(self.cat_embed.weight, -1 / math.sqrt(d_embed), 1 / math.sqrt(d_embed))
        self.text_embed = (nn.EmbeddingBag(int(spec["text_buckets"]), TEXT_DIM, mode="mean", padding_idx=0)
                           if self.n_text else None)
        d_in = self.n_num + self.n_cat * d_embed + self.n_text * TEXT_DIM
        if d_in == 0:
            raise ConfigError("TableEncoder needs at least one number, category or text column")
        self.mlp = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width),
                                 nn.ReLU())
        self.width = width

    def forward(self, x_num: Tensor, x_cat: Tensor, x_text: Tensor) -> Tensor:
        b = x_num.shape[0]
        parts = [x_num.float()] if self.n_num else []  # (B, Kn)
        if self.cat_embed is not None:
            parts.append(self.cat_embed(x_cat + self.cat_offsets).reshape(b, -1))  # (B, C*d)
        if self.text_embed is not None:
            parts.append(self.text_embed(x_text.reshape(b * self.n_text, -1)).reshape(b, -1))  # (B, T*32)
        return self.mlp(torch.cat(parts, dim=1))  # (B, width)


class ImageTableModel(nn.Module):
    """Normalise → backbone features (+ table features) → linear head. See the module docstring.

    Args:
        n_outputs: classes (single- or multi-label).
        backbone: ``"small_cnn"`` or ``"resnet"`` (see :func:`deepfit.models.resnet.build_backbone`).
        backbone_config: its ``config()``.
        mean, std: per-channel statistics of the training images in ``[0, 1]`` units.
        table_spec: ``TablePreprocessor.spec()`` of the other columns, or None for images only.
        table_width: width of the table MLP.
        dropout: before the head.
    """

    def __init__(self, *, n_outputs: int, backbone: str, backbone_config: dict[str, Any], mean: list[float],
                 std: list[float], table_spec: dict | None = None, table_width: int = 128,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if n_outputs < 1:
            raise ConfigError(f"n_outputs must be >= 1, got {n_outputs}")
        self.n_outputs, self.backbone_name, self.backbone_config = n_outputs, backbone, dict(backbone_config)
        self.mean, self.std, self.table_spec, self.table_width = list(mean), list(std), table_spec, table_width
        self.dropout_p = dropout
        self.normalize = Normalize(self.mean, self.std)
        self.backbone = build_backbone(backbone, 0, self.backbone_config)  # features only
        has_table = table_spec is not None and (table_spec["n_num"] or table_spec["cat_cardinalities"]
                                                or table_spec["n_text"])
        self.table = TableEncoder(table_spec, width=table_width) if has_table else None
        d = self.backbone.n_features + (self.table.width if self.table is not None else 0)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(d, n_outputs)

    def features(self, image: Tensor, *table: Tensor) -> Tensor:
        """The joint feature vector ``(B, F)`` before the head."""
        h = self.backbone.features(self.normalize(image))  # (B, F_img)
        if self.table is not None:
            if len(table) != 3:
                raise ConfigError(f"this model also takes the row's other columns (num, cat, text); got {len(table)} "
                                  "extra inputs")
            h = torch.cat([h, self.table(*table)], dim=1)  # (B, F_img + width)
        return h

    def forward(self, image: Tensor, *table: Tensor) -> Tensor:
        return self.head(self.drop(self.features(image, *table)))  # (B, n_outputs)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Backbone groups (minus its empty head), then table encoder + head together."""
        groups = [g for g in self.backbone.layer_groups() if g]
        last = list(self.head.parameters()) + (list(self.table.parameters()) if self.table is not None else [])
        return [*groups, last]

    def config(self) -> dict[str, Any]:
        """Everything ``__init__`` needs besides ``n_outputs`` and the table spec (plain JSON)."""
        return {"backbone": self.backbone_name, "backbone_config": self.backbone_config, "mean": self.mean,
                "std": self.std, "table_width": self.table_width, "dropout": self.dropout_p}
