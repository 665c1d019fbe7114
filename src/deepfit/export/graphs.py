"""The exported graphs: torch modules from "values as close to raw as ONNX allows" to the outputs.

Each module here wraps a predictor's model with everything the predictor does in NumPy or
torch between the raw values and its probabilities (or regression values), so that
``torch.onnx.export`` puts all of it into one graph:

* :class:`TableGraph` (tables, and the table columns of image models): one input per column —
  numbers float64 ``(N,)`` (NaN or +/-inf = missing; float64 because deepfit's quantiles hold the
  training values themselves, and a value rounded to float32 falls off its tie), categories int64 codes ``(N,)`` (0 =
  missing or unknown, ``i + 1`` = the i-th value of the column's vocabulary), binary columns
  int64 codes ``(N,)`` (0 = missing, 1 and 2 = the two values, anything else = a value not seen
  in training), dates float64 seconds since 1970-01-01 UTC ``(N,)`` (NaN = missing), sequences
  float32 ``(N, C, L)`` plus their lengths int64 ``(N,)`` — and in the graph the quantile-normal
  scaling with its inverse normal CDF (float64), the missing indicators, the calendar features,
  the model with its linear part blended in and every bagged model, and the mean member softmax
  (classification) or the inverse target transform and bounds (regression, float64);
* :class:`ImageGraph`: float32 ``(N, 3, S, S)`` pixels in 0..255 after decoding and resizing;
  in the graph the division by 255, the channel normalisation, the test-time views (mirror,
  4 one-pixel shifts as fixed sampling grids) and the softmax/sigmoid averaged over them;
* :class:`ArraysGraph`: the float32 arrays → softmax;
* :class:`LMGraph`: int64 token ids ``(B, T)``, ``T <= context`` → next-token logits ``(B, T, V)``.

Text columns (hashed n-grams, TF-IDF, BPE) have no ONNX equivalent: :func:`column_inputs`
raises :class:`~deepfit.errors.ExportError` naming the column.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.errors import ExportError

__all__ = ["ndtri", "interp", "TableInputs", "TableGraph", "ImageGraph", "ArraysGraph", "LMGraph", "column_inputs",
           "NOT_EXPORTABLE"]

NOT_EXPORTABLE = ("text",)  # column kinds whose encoding has no ONNX equivalent

# torch.special.ndtri's Cephes coefficients (ATen/native/Math.h, calc_ndtri), evaluated in float64.
_S2PI = 2.50662827463100050242e0
_EXP_M2 = 0.13533528323661269189  # exp(-2)
_P0 = (-5.99633501014107895267e1, 9.80010754185999661536e1, -5.66762857469070293439e1, 1.39312609387279679503e1,
       -1.23916583867381258016e0)
_Q0 = (1.0, 1.95448858338141759834e0, 4.67627912898881538453e0, 8.63602421390890590575e1,
       -2.25462687854119370527e2, 2.00260212380060660359e2, -8.20372256168333339912e1, 1.59056225126211695515e1,
       -1.18331621121330003142e0)
_P1 = (4.05544892305962419923e0, 3.15251094599893866154e1, 5.71628192246421288162e1, 4.40805073893200834700e1,
       1.46849561928858024014e1, 2.18663306850790267539e0, -1.40256079171354495875e-1, -3.50424626827848203418e-2,
       -8.57456785154685413611e-4)
_Q1 = (1.0, 1.57799883256466749731e1, 4.53907635128879210584e1, 4.13172038254672030440e1, 1.50425385692907503408e1,
       2.50464946208309415979e0, -1.42182922854787788574e-1, -3.80806407691578277194e-2,
       -9.33259480895457427372e-4)
_P2 = (3.23774891776946035970e0, 6.91522889068984211695e0, 3.93881025292474443415e0, 1.33303460815807542389e0,
       2.01485389549179081538e-1, 1.23716634817820021358e-2, 3.01581553508235416007e-4, 2.65806974686737550832e-6,
       6.23974539184983293730e-9)
_Q2 = (1.0, 6.02427039364742014255e0, 3.67983563856160859403e0, 1.37702099489081330271e0, 2.16236993594496635890e-1,
       1.34204006088543189037e-2, 3.28014464682127739104e-4, 2.89247864745380683936e-6, 6.79019408009981274425e-9)


def _polevl(x: Tensor, coefs: tuple[float, ...]) -> Tensor:
    out = torch.full_like(x, coefs[0])
    for c in coefs[1:]:
        out = out * x + c
    return out


def ndtri(p: Tensor) -> Tensor:
    """The inverse standard normal CDF of ``p`` in (0, 1), float64, written in exportable ops.

    The same rational approximations and branches as ``torch.special.ndtri`` (Cephes), so the
    two agree to a few ulps. ``p`` outside (0, 1) is not handled (deepfit clips it to
    ``[1e-7, 1 - 1e-7]`` first).

    Example:
        >>> p = torch.tensor([1e-7, 0.02, 0.5, 0.9, 1 - 1e-7], dtype=torch.float64)
        >>> bool((ndtri(p) - torch.special.ndtri(p)).abs().max() < 1e-12)
        True
    """
    upper = p > 1.0 - _EXP_M2
    y = torch.where(upper, 1.0 - p, p)
    # central part: |y - 0.5| <= 3/8
    c = y - 0.5
    c2 = c * c
    central = (c + c * (c2 * _polevl(c2, _P0) / _polevl(c2, _Q0))) * _S2PI
    # tails: x = sqrt(-2 log y), then x0 - x1
    yt = torch.where(y > _EXP_M2, torch.full_like(y, 0.01), y)  # keep log() finite where the tail is not used
    x = torch.sqrt(-2.0 * torch.log(yt))
    x0 = x - torch.log(x) / x
    z = 1.0 / x
    x1 = torch.where(x < 8.0, z * _polevl(z, _P1) / _polevl(z, _Q1), z * _polevl(z, _P2) / _polevl(z, _Q2))
    tail = x0 - x1
    tail = torch.where(upper, tail, -tail)
    return torch.where(y > _EXP_M2, central, tail)


def interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """``np.interp(x, xp, fp)`` for finite float64 ``x`` (N,) and non-decreasing ``xp`` (n >= 2,),
    with NumPy's rule for repeated ``xp``: ``x`` falls in the segment after the last ``xp <= x``.

    Example:
        >>> xp = torch.tensor([0.0, 1.0, 1.0, 3.0], dtype=torch.float64)
        >>> fp = torch.tensor([0.0, 0.2, 0.6, 1.0], dtype=torch.float64)
        >>> x = torch.tensor([-1.0, 0.5, 1.0, 2.0, 5.0], dtype=torch.float64)
        >>> interp(x, xp, fp).tolist() == np.interp(x.numpy(), xp.numpy(), fp.numpy()).tolist()
        True
    """
    n = xp.shape[0]
    count = (xp.unsqueeze(0) <= x.unsqueeze(1)).to(torch.int64).sum(1)  # (N,) how many xp <= x
    j = torch.clamp(count - 1, 0, n - 2)
    x0, x1, y0, y1 = xp[j], xp[j + 1], fp[j], fp[j + 1]
    slope = (y1 - y0) / torch.where(x1 > x0, x1 - x0, torch.ones_like(x0))
    inside = slope * (x - x0) + y0
    return torch.where(count == 0, fp[0], torch.where(count >= n, fp[n - 1], inside))


def _cycle(x: Tensor, period: float) -> list[Tensor]:
    angle = 2 * math.pi * x / period
    return [torch.sin(angle), torch.cos(angle)]


def _floor_div(a: Tensor, b: float) -> Tensor:
    return torch.floor(a / b)


class _Number(nn.Module):
    """float64 (N,) raw numbers → float32 (N, 1 or 2): quantile-normal score [+ missing indicator]."""

    def __init__(self, feature: Any) -> None:
        super().__init__()
        from deepfit.features.number import CLIP

        q = np.asarray(feature.quantiles, dtype=np.float64)
        self.flat = len(q) < 2 or q[-1] == q[0]
        self.clip = CLIP
        refs = np.linspace(0.0, 1.0, len(q))
        self.register_buffer("q", torch.from_numpy(q.copy()))
        self.register_buffer("refs", torch.from_numpy(refs))
        self.register_buffer("q_rev", torch.from_numpy(-q[::-1].copy()))
        self.register_buffer("refs_rev", torch.from_numpy(-refs[::-1].copy()))
        self.indicator = bool(feature.missing_indicator)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(torch.float64)
        missing = ~torch.isfinite(x)
        if self.flat:
            z = torch.zeros_like(x)
        else:
            v = torch.where(missing, torch.zeros_like(x), x)
            p = 0.5 * (interp(v, self.q, self.refs) - interp(-v, self.q_rev, self.refs_rev))
            z = torch.clamp(ndtri(torch.clamp(p, 1e-7, 1 - 1e-7)), -self.clip, self.clip)
            z = torch.where(missing, torch.zeros_like(z), z)
        cols = [z] + ([missing.to(torch.float64)] if self.indicator else [])
        return torch.stack(cols, dim=1).to(torch.float32)


class _Binary(nn.Module):
    """int64 (N,) codes (0 missing, 1/2 the two values, other: unseen) → float32 (N, 1 or 2)."""

    def __init__(self, feature: Any) -> None:
        super().__init__()
        self.n_values = len(feature.values)
        self.indicator = bool(feature.missing_indicator)

    def forward(self, code: Tensor) -> Tensor:
        x = torch.full_like(code, 0.5, dtype=torch.float32)
        for k in range(self.n_values):
            x = torch.where(code == k + 1, torch.full_like(x, float(k)), x)
        cols = [x] + ([(code == 0).to(torch.float32)] if self.indicator else [])
        return torch.stack(cols, dim=1)


class _Date(nn.Module):
    """float64 (N,) seconds since 1970-01-01 UTC → float32 (N, 7..10): trend, calendar cycles, indicator.

    The calendar (month, day of week, day of year, hour, minute) comes from the day count by
    Howard Hinnant's ``civil_from_days``, in float64 floor divisions (exact for these integers)."""

    def __init__(self, feature: Any) -> None:
        super().__init__()
        from deepfit.features.number import CLIP

        self.mean, self.std, self.clip = float(feature.mean), float(feature.std), CLIP
        self.has_time, self.indicator = bool(feature.has_time), bool(feature.missing_indicator)

    def forward(self, t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        missing = ~torch.isfinite(t)
        t = torch.where(missing, torch.zeros_like(t), t)
        years = t / (86400.0 * 365.25) + 1970.0
        days = _floor_div(t, 86400.0)
        seconds = t - days * 86400.0
        z = days + 719468.0
        era = _floor_div(z, 146097.0)
        doe = z - era * 146097.0  # [0, 146096]
        yoe = _floor_div(doe - _floor_div(doe, 1460.0) + _floor_div(doe, 36524.0) - _floor_div(doe, 146096.0), 365.0)
        doy_march = doe - (365.0 * yoe + _floor_div(yoe, 4.0) - _floor_div(yoe, 100.0))  # [0, 365] from March 1
        mp = _floor_div(5.0 * doy_march + 2.0, 153.0)  # [0, 11], 0 = March
        month = torch.where(mp < 10.0, mp + 3.0, mp - 9.0)  # 1..12
        year = yoe + era * 400.0 + (month <= 2.0).to(torch.float64)
        leap = ((torch.remainder(year, 4.0) == 0) & ((torch.remainder(year, 100.0) != 0)
                                                     | (torch.remainder(year, 400.0) == 0))).to(torch.float64)
        day_of_year = torch.where(mp < 10.0, doy_march + 60.0 + leap, doy_march - 305.0)  # 1-based
        day_of_week = torch.remainder(days + 3.0, 7.0)  # Monday = 0 (1970-01-01 was a Thursday)
        cols = [torch.clamp((years - self.mean) / self.std, -self.clip, self.clip)]
        cols += _cycle(month - 1.0, 12.0)
        cols += _cycle(day_of_week, 7.0)
        cols += _cycle(day_of_year - 1.0, 365.25)
        if self.has_time:
            hour = _floor_div(seconds, 3600.0)
            minute = _floor_div(seconds - hour * 3600.0, 60.0)
            cols += _cycle(hour + minute / 60.0, 24.0)
        out = torch.stack(cols, dim=1)
        out = torch.where(missing.unsqueeze(1), torch.zeros_like(out), out)
        if self.indicator:
            out = torch.cat([out, missing.to(torch.float64).unsqueeze(1)], dim=1)
        return out.to(torch.float32)


class _Category(nn.Module):
    """int64 (N,) codes → int64 (N, 1); codes outside 0..V become 0 (unknown)."""

    def __init__(self, feature: Any) -> None:
        super().__init__()
        self.size = len(feature.vocabulary)

    def forward(self, code: Tensor) -> Tensor:
        code = code.to(torch.int64)
        bad = (code < 0) | (code > self.size)
        return torch.where(bad, torch.zeros_like(code), code).unsqueeze(1)


class _Sequence(nn.Module):
    """float32 (N, C, L) raw values and int64 (N,) lengths → scaled (N, C, L) and mask (N, L)."""

    def __init__(self, feature: Any) -> None:
        super().__init__()
        self.length = int(feature.max_len)
        self.register_buffer("mean", torch.tensor(feature.mean, dtype=torch.float64).view(1, -1, 1))
        self.register_buffer("std", torch.tensor(feature.std, dtype=torch.float64).view(1, -1, 1))
        self.register_buffer("positions", torch.arange(self.length, dtype=torch.int64).view(1, -1))

    def forward(self, x: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        valid = self.positions < torch.clamp(length.to(torch.int64), 0, self.length).unsqueeze(1)  # (N, L)
        z = (x.to(torch.float64) - self.mean) / self.std
        keep = torch.isfinite(z) & valid.unsqueeze(1)
        return torch.where(keep, z, torch.zeros_like(z)).to(torch.float32), valid.to(torch.float32)


def column_inputs(preprocessor: Any, *, what: str = "this model") -> list[dict[str, Any]]:
    """The graph inputs of a table preprocessor's columns, in fit order: ``name``, ``column``,
    ``kind``, ``dtype``, ``shape`` (``"batch"`` = the dynamic axis) and, for codes, ``vocabulary``.

    Raises :class:`ExportError` naming the first column whose kind cannot be exported."""
    out: list[dict[str, Any]] = []
    for name, feature in preprocessor.features.items():
        kind = feature.kind
        if kind in NOT_EXPORTABLE:
            raise ExportError(
                f"column '{name}' of {what} is a text column: its encoding (hashed character and word n-grams with "
                "TF-IDF weights, and byte-level BPE tokens) has no ONNX equivalent, so the model cannot be exported; "
                f"retrain without it (types={{'{name}': 'ignore'}} or drop the column) to export, or serve the model "
                "with deepfit itself")
        if kind == "number":
            out.append({"name": name, "column": name, "kind": kind, "dtype": "float64", "shape": ["batch"],
                        "missing": "NaN (or +/-inf)", "range": [feature.min, feature.max]})
        elif kind == "category":
            out.append({"name": name, "column": name, "kind": kind, "dtype": "int64", "shape": ["batch"],
                        "vocabulary": list(feature.vocabulary),
                        "codes": "1 + the value's index in vocabulary; 0 = missing or not in vocabulary"})
        elif kind == "binary":
            out.append({"name": name, "column": name, "kind": kind, "dtype": "int64", "shape": ["batch"],
                        "vocabulary": list(feature.values),
                        "codes": "0 = missing; 1 + the value's index in vocabulary; -1 = a value not in vocabulary"})
        elif kind == "date":
            out.append({"name": name, "column": name, "kind": kind, "dtype": "float64", "shape": ["batch"],
                        "unit": "seconds since 1970-01-01T00:00:00 UTC (naive times are taken as UTC)",
                        "missing": "NaN"})
        elif kind == "sequence":
            out.append({"name": name, "column": name, "kind": kind, "dtype": "float32",
                        "shape": ["batch", feature.channels, feature.max_len],
                        "layout": f"channels x positions, cut or padded (any value) to {feature.max_len}"})
            out.append({"name": f"{name}:length", "column": name, "kind": "sequence_length", "dtype": "int64",
                        "shape": ["batch"], "missing": "0 (a missing sequence)"})
        else:  # pragma: no cover - every preprocessor kind is handled above
            raise ExportError(f"column '{name}' of {what} has kind {kind!r}, which this deepfit cannot export")
    if not out:
        raise ExportError(f"{what} reads no input column; nothing to export")
    return out


class TableInputs(nn.Module):
    """The raw column inputs (see :func:`column_inputs`) → the preprocessor's arrays
    ``(num, cat, text)`` [+ ``(seq, seq_mask)``], as ``TablePreprocessor.arrays`` builds them."""

    _ENCODERS = {"number": _Number, "binary": _Binary, "date": _Date, "category": _Category, "sequence": _Sequence}

    def __init__(self, preprocessor: Any, *, what: str = "this model") -> None:
        super().__init__()
        self.specs = column_inputs(preprocessor, what=what)
        self.kinds = [f.kind for f in preprocessor.features.values()]
        self.encoders = nn.ModuleList([self._ENCODERS[f.kind](f) for f in preprocessor.features.values()])
        self.seq_width = max((int(f.max_len) for f in preprocessor.features.values() if f.kind == "sequence"),
                             default=0)

    @property
    def n_inputs(self) -> int:
        return len(self.specs)

    def forward(self, *raw: Tensor) -> tuple[Tensor, ...]:
        ref = raw[0]
        while ref.dim() > 1:
            ref = ref[:, 0]
        ones = torch.ones_like(ref, dtype=torch.float32).unsqueeze(1)  # (N, 1): empty groups keep the batch axis
        num: list[Tensor] = []
        cat: list[Tensor] = []
        seqs: list[Tensor] = []
        masks: list[Tensor] = []
        i = 0
        for kind, encoder in zip(self.kinds, self.encoders):
            if kind == "sequence":
                seq, mask = encoder(raw[i], raw[i + 1])
                i += 2
                pad = self.seq_width - seq.shape[-1]
                if pad:
                    seq, mask = F.pad(seq, (0, pad)), F.pad(mask, (0, pad))
                seqs.append(seq)
                masks.append(mask)
                continue
            (cat if kind == "category" else num).append(encoder(raw[i]))
            i += 1
        x_num = torch.cat(num, dim=1) if num else ones[:, :0]
        x_cat = torch.cat(cat, dim=1) if cat else ones[:, :0].to(torch.int64)
        x_text = ones.to(torch.int64).unsqueeze(1)[:, :0]  # (N, 0, 1): no text columns
        out: tuple[Tensor, ...] = (x_num, x_cat, x_text)
        if seqs:
            seq_mask = masks[0]
            for m in masks[1:]:
                seq_mask = torch.maximum(seq_mask, m)
            out += (torch.cat(seqs, dim=1), seq_mask)
        return out


class TableGraph(nn.Module):
    """A table predictor's raw columns → probabilities ``(N, C)`` (classification) or the value
    ``(N,)`` float64 in the target's units, bounded (regression)."""

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        self.inputs = TableInputs(predictor.preprocessor, what="this table model")
        self.model = predictor.model.eval()
        self.task = predictor.task
        if self.task == "regress":
            t = predictor.target
            self.mean, self.std, self.log1p = float(t.mean), float(t.std), t.transform == "log1p"
            self.low = None if t.low is None else float(t.low)
            self.high = None if t.high is None else float(t.high)

    def forward(self, *raw: Tensor) -> Tensor:
        out = self.model(*self.inputs(*raw)).float()  # (N, k, C)
        if self.task == "classify":
            return out.softmax(dim=-1).mean(dim=1)  # (N, C)
        y = out[..., 0].mean(dim=1).to(torch.float64) * self.std + self.mean  # (N,)
        if self.log1p:
            y = torch.exp(y) - 1.0
        if self.low is not None:
            y = torch.clamp(y, self.low, self.high)
        return y


class ImageGraph(nn.Module):
    """Pixels float32 ``(N, 3, S, S)`` in 0..255 [+ the row's other columns] → probabilities ``(N, C)``."""

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        from deepfit.augment.image import affine_matrices

        self.model = predictor.model.eval()
        self.multilabel = predictor.task == "multilabel"
        self.table = None
        if predictor.preprocessor is not None:
            kinds = [f.kind for f in predictor.preprocessor.features.values()]
            if "sequence" in kinds:
                name = next(n for n, f in predictor.preprocessor.features.items() if f.kind == "sequence")
                raise ExportError(f"column '{name}' of this image model is a sequence column, which image models "
                                  "do not read; this artifact is inconsistent and cannot be exported")
            self.table = TableInputs(predictor.preprocessor, what="this image model")
        size = int(predictor.feature.size)
        self.tta, self.flip = bool(predictor.tta), bool(predictor.flip)
        self.register_buffer("reverse", torch.arange(size - 1, -1, -1, dtype=torch.int64))
        grids = []
        if self.tta:  # the four one-pixel shifts of ImagePredictor._views, as fixed sampling grids
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                theta = affine_matrices(batch=1, height=size, width=size,
                                        translate=torch.tensor([[dx / size, dy / size]]))
                grids.append(F.affine_grid(theta, [1, 3, size, size], align_corners=False))
        self.register_buffer("grids", torch.cat(grids) if grids else torch.zeros(0, size, size, 2))

    def forward(self, image: Tensor, *columns: Tensor) -> Tensor:
        x = image.to(torch.float32) / 255.0
        table = self.table(*columns)[:3] if self.table is not None else ()
        views = [x]
        if self.tta:
            if self.flip:
                views.append(torch.index_select(x, 3, self.reverse))
            batch = x.shape[0]
            for g in range(self.grids.shape[0]):
                grid = self.grids[g:g + 1].expand(batch, -1, -1, -1)
                views.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False))
        acc = None
        for v in views:
            logits = self.model(v, *table).float()
            p = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
            acc = p if acc is None else acc + p
        return acc / len(views)


class ArraysGraph(nn.Module):
    """float32 arrays ``(N, *input_shape)`` → class probabilities ``(N, C)``."""

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        self.model = predictor.model.eval()

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.model(x).float(), dim=1)


class LMGraph(nn.Module):
    """int64 token ids ``(B, T)``, ``1 <= T <= context`` → next-token logits ``(B, T, V)`` float32."""

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        self.model = predictor.model.eval()

    def forward(self, ids: Tensor) -> Tensor:
        return self.model(ids).float()
