"""TabularModel: a TabM-mini style efficient ensemble for tables (arXiv 2410.24210).

Inputs are the arrays of :class:`~deepfit.features.preprocessor.TablePreprocessor` (``arrays()``,
in the order of ``input_names()``):

* numbers → piecewise-linear encoding (PLE, Gorishniy et al. 2022) over the fitted bin edges,
  then a per-column linear map to ``d_embed``, added to a per-column linear embedding of the
  value itself (version "b", TabM's default; version "a": ReLU of the PLE map alone); a column
  without bins is its own single unbounded "bin". All columns are encoded at once: the edges are
  padded to a (columns, bins) table and the per-column linears are one batched matmul;
* categories → one embedding table holding every column's vocabulary (offsets), row 0 of each
  column = missing/unknown;
* text, "wide": the TF-IDF weighted n-grams (``text``, ``text_w``) through a linear map straight
  to the output logits (one ``nn.EmbeddingBag`` of ``n_outputs`` columns, zero at start, shared
  by the members): a bag-of-n-grams logistic regression trained jointly with the rest. With
  ``ngram_prior`` each weight is scaled by a fixed naive-Bayes log-count ratio of its n-gram
  (:func:`ngram_prior`, NBSVM's prior; a buffer saved with the weights);
* text, "deep": the BPE tokens through a small pre-norm transformer
  (:class:`~deepfit.models.transformer.TextEncoder`, mean-pooled, ``text_dim`` wide) into the
  MLP; the text's style numbers arrive with the numbers;
* sequences (``seq``, ``seq_mask``) → a 1-D ResNet (:class:`~deepfit.models.conv1d.ResNet1d`,
  mask-aware average pool) into the MLP; in training mode the sequences are augmented first
  (random shift, amplitude scale, noise; :class:`~deepfit.augment.signal.SignalAugment`).

The concatenated vector feeds ``k`` ensemble members that share one MLP: each member scales the
input elementwise by its own adapter (initialised at 1 +/- 0.1 noise), the shared MLP (``depth`` x
Linear(width) + ReLU + Dropout) runs on all members as one batch, and per-member linear heads are
one einsum (plus the wide text logits). With ``linear=True`` the model holds a linear model too
(:func:`linear_logits`: the piecewise-linear encodings and values of the numbers, one weight per
category level, a bias; fitted before training with L2 shrinkage chosen on validation rows by
``deepfit.tasks.table.linear`` and stored as buffers), and in eval mode every member's output is
``(1 - lin_alpha) * output + lin_alpha * linear`` (logits or values), ``lin_alpha`` chosen on the
validation rows after training (0 until then; in training mode the linear part is skipped).
Output: ``(B, k, n_outputs)``. Train every member (:func:`ensemble_loss`: the mean
loss over members), predict with the mean (:func:`ensemble_predict`).

Example:
    >>> import torch
    >>> spec = {"n_num": 2, "num_bins": [[0.0, 1.0, 2.0], None], "cat_cardinalities": [4],
    ...         "n_text": 0, "text_buckets": 1024}
    >>> model = TabularModel(spec, n_outputs=3, k=4, width=32, depth=2)
    >>> out = model(torch.randn(5, 2), torch.randint(0, 4, (5, 1)), torch.zeros(5, 0, 1, dtype=torch.long))
    >>> out.shape, ensemble_predict(out, "classify").shape
    (torch.Size([5, 4, 3]), torch.Size([5, 3]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.errors import ConfigError

__all__ = ["TabularModel", "TabularBag", "FastDropout", "ensemble_loss", "ensemble_predict", "build_tabular",
           "ngram_prior", "linear_logits", "LINEAR_BUFFERS"]

LINEAR_BUFFERS = ("lin_ple", "lin_x", "lin_cat", "lin_bias")  # the linear model's weights, in this order


def _check_spec(spec: dict) -> None:
    for key in ("n_num", "num_bins", "cat_cardinalities", "n_text", "text_buckets"):
        if key not in spec:
            raise ConfigError(f"model spec lacks {key!r}; build it with TablePreprocessor.spec()")
    if len(spec["num_bins"]) != spec["n_num"]:
        raise ConfigError(f"model spec: num_bins has {len(spec['num_bins'])} entries for n_num={spec['n_num']}")
    for edges in spec["num_bins"]:
        if edges is not None and (len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:]))):
            raise ConfigError(f"model spec: bin edges must be >= 2 strictly increasing numbers, got {edges}")
    if any(int(c) < 1 for c in spec["cat_cardinalities"]):
        raise ConfigError("model spec: every category cardinality must be >= 1 (vocabulary + unknown)")


class FastDropout(nn.Module):
    """Dropout whose CPU mask comes from 64-bit random words, 8 mask bytes per draw.

    On CPU ``nn.Dropout``'s Bernoulli sampling cost as much as a 256-wide matmul here; this is
    about twice as fast. The drop rate is rounded to a multiple of 1/256 (0.1 → 0.1016). Other
    devices use ``F.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * 256)  # a byte < threshold drops the unit
        self.scale = 256 / (256 - self.threshold)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return torch.where(keep, x * self.scale, 0.0)


class TabularModel(nn.Module):
    """Numbers, categories and texts in; ``(B, k, n_outputs)`` member outputs out.

    Args:
        spec: from ``TablePreprocessor.spec()``: ``n_num``, ``num_bins``, ``cat_cardinalities``,
            ``n_text``, ``text_buckets``.
        n_outputs: classes (classification) or 1 (regression).
        k: ensemble members.
        width, depth: the shared MLP (``depth`` hidden layers of ``width``).
        dropout: after each hidden activation.
        d_embed: embedding width per number and per category column.
        ple: use the piecewise-linear encoding where bins exist (False: plain linear per column).
        ple_version: how a number becomes its ``d_embed`` vector (the two versions of
            ``rtdl_num_embeddings.PiecewiseLinearEmbeddings``): ``"b"`` (default, as in TabM)
            ``x * w + b`` plus a zero-initialised linear map of the PLE, no activation, so training
            starts from a linear embedding; ``"a"`` ReLU of the linear map of the PLE (the
            version of artifacts written before it was an option).
        text_dim, text_layers, text_heads: the transformer over each text column's BPE tokens
            (``text_layers=0``: token embeddings mean-pooled; ``text_dim=0``: no deep part).
        ngram_drop: share of a text's n-grams dropped at random in training (wide part).
        ngram_prior: scale the wide weights by a fixed (V, C) table, set with
            :meth:`set_ngram_prior` from :func:`ngram_prior` (ones until then).
        seq_widths, seq_strides: stages of the 1-D ResNet over sequence columns.
        seq_shift, seq_scale, seq_noise: sequence augmentation in training (shift in positions,
            amplitude range, noise standard deviation in scaled units).
        linear: hold a linear model (buffers ``lin_*``, zero until installed, saved with the
            weights) blended into the eval-mode output by ``lin_alpha`` (0 until set).
    """

    def __init__(self, spec: dict, *, n_outputs: int, k: int = 16, width: int = 256, depth: int = 3,
                 dropout: float = 0.1, d_embed: int = 16, ple: bool = True, ple_version: str = "b", text_dim: int = 0,
                 text_layers: int = 1,
                 text_heads: int = 4, ngram_drop: float = 0.0, ngram_prior: bool = False,
                 seq_widths: tuple[int, ...] | list[int] = (64, 64, 128),
                 seq_strides: tuple[int, ...] | list[int] = (1, 2, 2), seq_shift: int = 5,
                 seq_scale: tuple[float, float] | list[float] = (0.8, 1.2), seq_noise: float = 0.05,
                 linear: bool = False) -> None:
        super().__init__()
        _check_spec(spec)
        if n_outputs < 1 or k < 1 or width < 1 or depth < 1 or d_embed < 1:
            raise ConfigError(f"TabularModel needs positive sizes, got n_outputs={n_outputs}, k={k}, "
                              f"width={width}, depth={depth}, d_embed={d_embed}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if ple_version not in ("a", "b"):
            raise ConfigError(f"ple_version must be 'a' or 'b', got {ple_version!r}")
        self.k, self.width, self.depth, self.dropout, self.d_embed, self.ple = k, width, depth, dropout, d_embed, ple
        self.ple_version = ple_version
        self.n_num = int(spec["n_num"])
        self.n_cat = len(spec["cat_cardinalities"])
        self.n_text = int(spec["n_text"])
        self.n_seq = int(spec.get("seq_channels", 0))
        self.n_outputs = n_outputs
        self.text_dim, self.text_layers, self.text_heads = text_dim, text_layers, text_heads
        self.ngram_drop = ngram_drop
        self.ngram_prior = bool(ngram_prior) and self.n_text > 0
        self.seq_widths, self.seq_strides = [int(w) for w in seq_widths], [int(s) for s in seq_strides]
        self.seq_shift, self.seq_noise = int(seq_shift), float(seq_noise)
        self.seq_scale = (float(seq_scale[0]), float(seq_scale[1]))

        # Numbers: a padded (J, T) table of bins. Bin t of column j maps x to (x - left) * inv_width,
        # clamped to [lo, hi]: [0, 1] inside, unbounded below for the first bin and above for the last
        # (PLE extrapolates linearly); padded bins have inv_width 0 and so always give 0.
        bins = [e if (ple and e is not None) else None for e in spec["num_bins"]]
        n_bins = [len(e) - 1 if e is not None else 1 for e in bins]
        t_max = max(n_bins, default=1)
        left = torch.zeros(self.n_num, t_max)
        inv_width = torch.zeros(self.n_num, t_max)
        lo = torch.zeros(self.n_num, t_max)
        hi = torch.ones(self.n_num, t_max)
        for j, edges in enumerate(bins):
            if edges is None:  # a single unbounded bin: x itself
                inv_width[j, 0] = 1.0
            else:
                e = torch.tensor(edges, dtype=torch.float64)
                left[j, : n_bins[j]] = e[:-1].float()
                inv_width[j, : n_bins[j]] = (1.0 / (e[1:] - e[:-1])).float()
            lo[j, 0] = -math.inf
            hi[j, n_bins[j] - 1] = math.inf
        self.register_buffer("ple_left", left, persistent=False)  # (J, T); rebuilt from spec, not saved
        self.register_buffer("ple_inv_width", inv_width, persistent=False)
        self.register_buffer("ple_lo", lo, persistent=False)
        self.register_buffer("ple_hi", hi, persistent=False)
        bound = torch.tensor([1 / math.sqrt(n) for n in n_bins])[:, None, None]  # (J, 1, 1): like nn.Linear
        self.num_weight = nn.Parameter((torch.rand(self.n_num, t_max, d_embed) * 2 - 1) * bound)  # (J, T, d)
        self.num_bias = nn.Parameter((torch.rand(self.n_num, d_embed) * 2 - 1) * bound[:, :, 0])  # (J, d)
        self.num_linear = None
        if ple_version == "b":  # x * w + b plus a zero-initialised PLE part, no activation
            s0 = 1 / math.sqrt(d_embed)
            self.num_linear = nn.Parameter((torch.rand(self.n_num, d_embed) * 2 - 1) * s0)  # (J, d)
            nn.init.uniform_(self.num_bias, -s0, s0)
            nn.init.zeros_(self.num_weight)

        # Categories: one table, each column's codes shifted by an offset.
        cards = [int(c) for c in spec["cat_cardinalities"]]
        offsets = torch.tensor([0, *cards[:-1]], dtype=torch.long).cumsum(0)[: len(cards)]
        self.register_buffer("cat_offsets", offsets, persistent=False)  # (C,)
        self.cat_embed = nn.Embedding(sum(cards), d_embed) if cards else None  # row offset_c = column c's unknown
        if self.cat_embed is not None:
            nn.init.uniform_(self.cat_embed.weight, -1 / math.sqrt(d_embed), 1 / math.sqrt(d_embed))

        # Text: wide = n-gram logits (one table for all text columns); deep = a transformer over tokens.
        self.text_linear = self.text_encoder = None
        if self.n_text:
            self.text_linear = nn.EmbeddingBag(int(spec["text_buckets"]), n_outputs, mode="sum")
            nn.init.zeros_(self.text_linear.weight)
            if self.ngram_prior:  # (V, C) fixed per-n-gram, per-class scale of its weight; see ngram_prior()
                self.register_buffer("text_prior", torch.ones(int(spec["text_buckets"]), n_outputs))
            if text_dim:
                from deepfit.models.transformer import TextEncoder

                self.text_encoder = TextEncoder(vocab_size=int(spec["token_vocab"]), dim=text_dim, layers=text_layers,
                                                heads=text_heads, max_len=max(int(spec["max_tokens"]), 1))
        # Sequences: a 1-D ResNet over the channels of every sequence column.
        self.seq_encoder = None
        if self.n_seq:
            from deepfit.models.conv1d import ResNet1d

            self.seq_encoder = ResNet1d(self.n_seq, 0, widths=self.seq_widths, strides=self.seq_strides)

        d_in = ((self.n_num + self.n_cat) * d_embed + (self.n_text * text_dim if self.text_encoder is not None else 0)
                + (self.seq_encoder.n_features if self.seq_encoder is not None else 0))
        if d_in == 0 and self.text_linear is None:
            raise ConfigError("TabularModel needs at least one input column (number, category, text or sequence)")
        d_in = max(d_in, 1)  # text alone without a deep part: the MLP sees a constant 1
        self.d_in = d_in
        self.adapter = nn.Parameter(1 + 0.1 * torch.randn(k, d_in))  # (k, d_in): per-member input scaling
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU(), FastDropout(dropout)]
        self.mlp = nn.Sequential(*layers)
        s = 1 / math.sqrt(width)
        self.head_weight = nn.Parameter((torch.rand(k, width, n_outputs) * 2 - 1) * s)  # (k, W, C)
        self.head_bias = nn.Parameter((torch.rand(k, n_outputs) * 2 - 1) * s)  # (k, C)
        self.linear = bool(linear)
        if self.linear:  # fixed weights, fitted by deepfit.tasks.table.linear; blended in by lin_alpha
            self.register_buffer("lin_ple", torch.zeros(self.n_num, t_max, n_outputs))  # (J, T, C)
            self.register_buffer("lin_x", torch.zeros(self.n_num, n_outputs))  # (J, C)
            self.register_buffer("lin_cat", torch.zeros(max(sum(cards), 0), n_outputs))  # (V, C)
            self.register_buffer("lin_bias", torch.zeros(n_outputs))  # (C,)
            self.register_buffer("lin_alpha", torch.zeros(()))  # the linear model's share of the output

    def ple_encode(self, x_num: Tensor) -> Tensor:
        """Piecewise-linear encoding of every number column at once: (B, J) → (B, J, T).

        For edges b_0 < ... < b_n, bin t holds (x - b_t) / (b_{t+1} - b_t) clamped to [0, 1], except
        that the first bin is not clamped below and the last not above. Columns without bins give
        x itself in bin 0; padded bins give 0.
        """
        x = x_num.float().unsqueeze(-1)  # (B, J, 1)
        return torch.clamp((x - self.ple_left) * self.ple_inv_width, self.ple_lo, self.ple_hi)  # (B, J, T)

    def forward(self, x_num: Tensor, x_cat: Tensor, x_text: Tensor, *extra: Tensor) -> Tensor:
        """``x_num`` (B, J) float, ``x_cat`` (B, C) int, ``x_text`` (B, T, G) int n-gram ids, then
        ``text_w`` (B, T, G) float and ``tokens`` (B, T, L) int when there are text columns, then
        ``seq`` (B, C, S) float and ``seq_mask`` (B, S) when there are sequences → (B, k, n_outputs)."""
        if x_num.shape[1] != self.n_num or x_cat.shape[1] != self.n_cat or x_text.shape[1] != self.n_text:
            raise ConfigError(f"TabularModel expects {self.n_num} number, {self.n_cat} category and {self.n_text} "
                              f"text columns, got {x_num.shape[1]}, {x_cat.shape[1]}, {x_text.shape[1]}")
        n_extra = (2 if self.n_text else 0) + (2 if self.n_seq else 0)
        if len(extra) != n_extra:
            raise ConfigError(f"TabularModel expects {3 + n_extra} inputs (see TablePreprocessor.input_names()), "
                              f"got {3 + len(extra)}")
        parts: list[Tensor] = []
        b = x_num.shape[0]
        wide = None
        enc = self.ple_encode(x_num) if self.n_num else None  # (B, J, T)
        if enc is not None:
            emb = torch.einsum("bjt,jtd->bjd", enc, self.num_weight) + self.num_bias  # (B, J, d)
            if self.num_linear is None:
                parts.append(F.relu(emb).reshape(b, -1))  # (B, J*d)
            else:
                parts.append((emb + x_num.float().unsqueeze(-1) * self.num_linear).reshape(b, -1))  # (B, J*d)
        if self.cat_embed is not None:
            parts.append(self.cat_embed(x_cat + self.cat_offsets).reshape(b, -1))  # (B, C*d)
        if self.n_text:
            text_w, tokens = extra[0], extra[1]
            wide = self._wide(x_text, text_w) if wide is None else wide + self._wide(x_text, text_w)  # (B, C)
            if self.text_encoder is not None:
                pooled = self.text_encoder(tokens.reshape(b * self.n_text, -1))  # (B*T, D)
                parts.append(pooled.reshape(b, -1))  # (B, T*D)
        if self.seq_encoder is not None:
            seq, mask = extra[-2], extra[-1]
            if self.training:
                seq, mask = self._augment(seq.float(), mask.float())
            parts.append(self.seq_encoder.features(seq, mask))  # (B, F)
        if not parts:
            parts.append(x_num.new_ones(b, 1))
        h = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, d_in)
        h = h.unsqueeze(1) * self.adapter  # (B, k, d_in)
        h = self.mlp(h)  # (B, k, W): shared weights, members batched
        out = torch.einsum("bkw,kwc->bkc", h, self.head_weight) + self.head_bias  # (B, k, C)
        out = out if wide is None else out + wide.unsqueeze(1)  # (B, k, C)
        if self.linear and not self.training:  # the blend is chosen after training: alpha is 0 until then
            # float32 even under bf16 autocast: the linear model is a fitted model of its own
            with torch.autocast(x_num.device.type, enabled=False):
                lin = linear_logits(enc, x_num, x_cat + self.cat_offsets, *self.linear_weights())  # (B, C)
            out = torch.lerp(out.float(), lin.unsqueeze(1), self.lin_alpha)
        return out

    def linear_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The linear model's ``(lin_ple, lin_x, lin_cat, lin_bias)`` (a model built with ``linear=True``)."""
        if not self.linear:
            raise ConfigError("this TabularModel has no linear part; build it with linear=True")
        return self.lin_ple, self.lin_x, self.lin_cat, self.lin_bias  # type: ignore[return-value]

    def _wide(self, ids: Tensor, weights: Tensor) -> Tensor:
        """Sum of TF-IDF weighted n-gram logits over every text column: (B, T, G) → (B, C)."""
        b = ids.shape[0]
        ids, weights = ids.reshape(b, -1), weights.reshape(b, -1).float()  # (B, T*G)
        keep = ids > 0
        if self.training and self.ngram_drop > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.ngram_drop)
            weights = weights / (1 - self.ngram_drop)
        # A flat bag with offsets: padded 2-D bags were several times slower to backpropagate on CPU.
        counts = keep.sum(1)  # (B,)
        offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])  # (B,)
        weight = self.text_linear.weight  # (V, C)
        if self.ngram_prior:
            weight = weight * self.text_prior
        return F.embedding_bag(ids[keep], weight, offsets, mode="sum", per_sample_weights=weights[keep])  # (B, C)

    def set_ngram_prior(self, prior: Tensor) -> None:
        """Install the (V, C) n-gram scale from :func:`ngram_prior` (a model built with ``ngram_prior=True``)."""
        if not self.ngram_prior:
            raise ConfigError("set_ngram_prior needs a model built with ngram_prior=True and a text column")
        if prior.shape != self.text_prior.shape or not bool(torch.isfinite(prior).all()):
            raise ConfigError(f"n-gram prior must be finite with shape {tuple(self.text_prior.shape)}, "
                              f"got {tuple(prior.shape)}")
        self.text_prior.copy_(prior)

    def _augment(self, seq: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Random shift (values and mask together), amplitude scale and noise (on data positions only)."""
        from deepfit.augment.signal import SignalAugment

        c = seq.shape[1]
        if self.seq_shift:
            shift = SignalAugment(max_shift=self.seq_shift, scale=(1.0, 1.0), noise=0.0)
            both = shift(torch.cat([seq, mask[:, None]], 1))  # (B, C + 1, S)
            seq, mask = both[:, :c], both[:, c]  # (B, C, S), (B, S)
        seq = SignalAugment(max_shift=0, scale=self.seq_scale, noise=self.seq_noise)(seq)
        return seq * mask[:, None], mask

    def config(self) -> dict:
        """Everything ``__init__`` needs besides the spec and ``n_outputs`` (plain JSON)."""
        return {"k": self.k, "width": self.width, "depth": self.depth, "dropout": self.dropout,
                "d_embed": self.d_embed, "ple": self.ple, "ple_version": self.ple_version,
                "text_dim": self.text_dim, "text_layers": self.text_layers,
                "text_heads": self.text_heads, "ngram_drop": self.ngram_drop, "ngram_prior": self.ngram_prior,
                "seq_widths": self.seq_widths,
                "seq_strides": self.seq_strides, "seq_shift": self.seq_shift, "seq_scale": list(self.seq_scale),
                "seq_noise": self.seq_noise, "linear": self.linear}


def linear_logits(enc: Tensor | None, x_num: Tensor, cat_ids: Tensor, lin_ple: Tensor, lin_x: Tensor,
                  lin_cat: Tensor, lin_bias: Tensor) -> Tensor:
    """The linear part's logits (or values), ``(B, C)``: an additive model of the inputs.

    ``enc`` (B, J, T) the numbers' piecewise-linear encodings (:meth:`TabularModel.ple_encode`,
    None without numbers) times ``lin_ple`` (J, T, C), so each number contributes a piecewise-linear
    curve; ``x_num`` (B, J) times ``lin_x`` (J, C); one row of ``lin_cat`` (V, C) per category
    column at ``cat_ids`` (B, C_cat), the codes already shifted by the column offsets; plus ``lin_bias``.

    Example:
        >>> enc, x = torch.ones(2, 1, 3), torch.ones(2, 1)
        >>> linear_logits(enc, x, torch.tensor([[1], [0]]), torch.ones(1, 3, 1), torch.ones(1, 1),
        ...               torch.tensor([[0.0], [0.5]]), torch.zeros(1)).tolist()
        [[4.5], [4.0]]
    """
    out = lin_bias.expand(x_num.shape[0], -1)  # (B, C)
    if enc is not None and enc.shape[1]:
        out = out + torch.einsum("bjt,jtc->bc", enc, lin_ple) + x_num.float() @ lin_x
    if cat_ids.shape[1]:
        out = out + F.embedding(cat_ids, lin_cat).sum(1)  # (B, C)
    return out


class TabularBag(nn.Module):
    """Several independently trained :class:`TabularModel` of one configuration as one model:
    their member outputs side by side, ``(B, sum of k, n_outputs)``, so :func:`ensemble_predict`
    averages over every member of every model (a deep ensemble of TabM ensembles). The models
    may differ in ``ple_version`` (a more diverse ensemble); everything else is shared.

    Example:
        >>> spec = {"n_num": 1, "num_bins": [None], "cat_cardinalities": [], "n_text": 0, "text_buckets": 1}
        >>> bag = TabularBag([TabularModel(spec, n_outputs=2, k=2, width=8, depth=1) for _ in range(3)])
        >>> bag(torch.randn(4, 1), torch.zeros(4, 0, dtype=torch.long), torch.zeros(4, 0, 1, dtype=torch.long)).shape
        torch.Size([4, 6, 2])
    """

    def __init__(self, models: list[TabularModel]) -> None:
        super().__init__()
        if len(models) < 1 or any(_shared(m.config()) != _shared(models[0].config()) for m in models):
            raise ConfigError("TabularBag needs one or more TabularModels of the same configuration "
                              "(only ple_version may differ)")
        self.bags = nn.ModuleList(models)

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.cat([m(*inputs) for m in self.bags], dim=1)  # (B, sum k, C)

    def config(self) -> dict:
        return {**self.bags[0].config(), "bags": len(self.bags),
                "ple_versions": [m.ple_version for m in self.bags]}  # type: ignore[union-attr]


def _shared(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "ple_version"}


MAX_BAGS = 64  # an artifact asking for more is refused before any model is built


def build_tabular(spec: dict, *, n_outputs: int, bags: int = 1, ple_versions: list[str] | None = None,
                  **config: object) -> TabularModel | TabularBag:
    """The model an artifact's config describes: a :class:`TabularModel`, or ``bags`` of them
    (``ple_versions``: one per model; default: all ``config["ple_version"]``)."""
    if not isinstance(bags, int) or isinstance(bags, bool) or not 1 <= bags <= MAX_BAGS:
        raise ConfigError(f"bags must be an integer from 1 to {MAX_BAGS}, got {bags!r}")
    if ple_versions is None:
        ple_versions = [config.pop("ple_version", "b")] * bags  # type: ignore[list-item]
    else:
        config.pop("ple_version", None)
    if not isinstance(ple_versions, list) or len(ple_versions) != bags:
        raise ConfigError(f"ple_versions must be a list of {bags} versions, got {ple_versions!r}")
    models = [TabularModel(spec, n_outputs=n_outputs, ple_version=v, **config) for v in ple_versions]  # type: ignore[arg-type]
    return models[0] if bags == 1 else TabularBag(models)


def ngram_prior(ids: Tensor, y: Tensor, *, buckets: int, n_classes: int, alpha: float = 1.0) -> Tensor:
    """Naive-Bayes scale of each n-gram's class weights, ``|log-count ratio|`` (V, C), as in NBSVM.

    For class c (one against the rest): ``r = log((p_c / |p_c|) / (q_c / |q_c|))`` where ``p_c``
    counts the training texts of class c that hold the n-gram and ``q_c`` those of the other
    classes, each plus ``alpha`` (Wang & Manning 2012). Padding (id 0) gets 0.

    Args:
        ids: (N, T, G) n-gram ids of the training rows (0 = padding).
        y: (N,) class codes.
    """
    n = ids.shape[0]
    flat = ids.reshape(n, -1)  # (N, T*G)
    cls = y.long().reshape(n, 1).expand_as(flat)
    keep = flat > 0
    counts = torch.zeros(buckets * n_classes, dtype=torch.float64)
    counts.index_add_(0, flat[keep] * n_classes + cls[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
    counts = counts.reshape(buckets, n_classes)  # (V, C) texts of class c holding n-gram v
    p = counts + alpha
    q = counts.sum(1, keepdim=True) - counts + alpha  # (V, C) the other classes
    r = (p / p[1:].sum(0)).log() - (q / q[1:].sum(0)).log()
    r[0] = 0.0
    return r.abs().float()


def ensemble_loss(output: Tensor, target: Tensor, task: str, label_smoothing: float = 0.0) -> Tensor:
    """Mean loss over all members: cross-entropy (classify) or MSE (regress, standardised target).

    Args:
        output: (B, k, C) member outputs.
        target: (B,) int64 class codes, or (B,) float standardised values.
        task: "classify" or "regress".
        label_smoothing: for cross-entropy.
    """
    b, k, c = output.shape
    if task == "classify":
        return F.cross_entropy(output.float().reshape(b * k, c), target.long().repeat_interleave(k),
                               label_smoothing=label_smoothing)
    if task == "regress":
        return F.mse_loss(output.float()[..., 0], target.float().reshape(b, 1).expand(b, k))
    raise ConfigError(f"task must be 'classify' or 'regress', got {task!r}")


def ensemble_predict(output: Tensor, task: str) -> Tensor:
    """The ensemble's prediction: mean member probabilities (B, C), or mean member values (B,)."""
    if task == "classify":
        return output.float().softmax(dim=-1).mean(dim=1)  # (B, C)
    if task == "regress":
        return output.float()[..., 0].mean(dim=1)  # (B,)
    raise ConfigError(f"task must be 'classify' or 'regress', got {task!r}")
