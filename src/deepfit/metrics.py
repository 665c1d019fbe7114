"""Streaming metrics computed on the device and reduced across ranks.

A metric keeps sums (or, for AUROC, the scores) as device tensors; ``update`` adds a batch
without a host sync; ``compute`` syncs once. Under torch.distributed, ``sync`` all-reduces the
sums (or all-gathers the scores) so every rank reports the metric of the whole data.

Classification outputs are logits: ``(N, C)`` for C classes, or ``(N,)``/``(N, 1)`` for a
binary task (positive when the logit is > 0). Regression outputs are ``(N,)`` or ``(N, K)``.

Example:
    >>> import torch
    >>> m = get_metric("accuracy")
    >>> m.update(torch.tensor([[2.0, 0.1], [0.3, 0.9]]), torch.tensor([0, 0]))
    >>> m.compute()
    0.5
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from deepfit.errors import ConfigError, unknown_choice

__all__ = [
    "Metric",
    "Accuracy",
    "ErrorRate",
    "F1Score",
    "AUROC",
    "MAE",
    "MSE",
    "RMSE",
    "R2",
    "get_metric",
    "METRICS",
    "classification_metrics",
    "multilabel_metrics",
    "regression_metrics",
]


class Metric:
    """Base class: override ``_update`` and ``compute``; keep state in ``self.state``."""

    name = "metric"
    higher_is_better = True

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self.state = {}

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output = output.detach()
        if output.is_floating_point():
            output = output.float()
        self._update(output, target.detach())

    def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.to(torch.float64)
        if key in self.state:
            self.state[key] = self.state[key] + value
        else:
            self.state[key] = value

    def sync(self) -> None:
        """Sum the state over ranks (a no-op without torch.distributed)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for key in sorted(self.state):
                dist.all_reduce(self.state[key])

    def compute(self) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _labels(output: torch.Tensor) -> torch.Tensor:
    if output.ndim == 2 and output.shape[1] > 1:
        return output.argmax(dim=1)
    return (output.reshape(-1) > 0).long()


class Accuracy(Metric):
    """Fraction of samples whose predicted class equals the target."""

    name = "accuracy"

    def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        pred = _labels(output)
        self._add("correct", (pred == target.reshape(-1).long()).sum())
        self._add("count", torch.tensor(float(pred.numel()), device=pred.device))

    def compute(self) -> float:
        if "count" not in self.state:
            return float("nan")
        return float(self.state["correct"] / self.state["count"])


class ErrorRate(Accuracy):
    """1 - accuracy."""

    name = "error_rate"
    higher_is_better = False

    def compute(self) -> float:
        return 1.0 - super().compute()


class F1Score(Metric):
    """F1 score: binary (positive class 1) for two classes, macro-averaged otherwise."""

    name = "f1"

    def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        pred = _labels(output)
        target = target.reshape(-1).long()
        k = output.shape[1] if output.ndim == 2 and output.shape[1] > 1 else 2
        confusion = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)
        self._add("confusion", confusion)

    def compute(self) -> float:
        if "confusion" not in self.state:
            return float("nan")
        c = self.state["confusion"]
        tp = c.diag()
        fp = c.sum(0) - tp
        fn = c.sum(1) - tp
        denom = 2 * tp + fp + fn
        f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
        if c.shape[0] == 2:
            return float(f1[1])
        present = c.sum(1) + c.sum(0) > 0
        return float(f1[present].mean())


class AUROC(Metric):
    """Area under the ROC curve: binary, or macro one-vs-rest for several classes."""

    name = "auroc"

    def __init__(self) -> None:
        super().__init__()
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def reset(self) -> None:
        self.scores, self.targets = [], []

    def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        self.scores.append(output.reshape(len(output), -1))
        self.targets.append(target.reshape(-1).long())

    def sync(self) -> None:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1) or not self.scores:
            return
        scores, targets = torch.cat(self.scores), torch.cat(self.targets)
        world = dist.get_world_size()
        n = torch.tensor([len(scores)], device=scores.device)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        m = int(max(int(s) for s in sizes))
        pad_s = torch.zeros(m, scores.shape[1], device=scores.device, dtype=scores.dtype)
        pad_t = torch.zeros(m, device=targets.device, dtype=targets.dtype)
        pad_s[: len(scores)], pad_t[: len(targets)] = scores, targets
        all_s = [torch.empty_like(pad_s) for _ in range(world)]
        all_t = [torch.empty_like(pad_t) for _ in range(world)]
        dist.all_gather(all_s, pad_s)
        dist.all_gather(all_t, pad_t)
        self.scores = [s[: int(k)] for s, k in zip(all_s, sizes)]
        self.targets = [t[: int(k)] for t, k in zip(all_t, sizes)]

    def compute(self) -> float:
        if not self.scores:
            return float("nan")
        scores, targets = torch.cat(self.scores).double(), torch.cat(self.targets)
        if scores.shape[1] == 1:
            return _binary_auroc(scores[:, 0], targets == 1)
        if scores.shape[1] == 2:
            return _binary_auroc(scores[:, 1] - scores[:, 0], targets == 1)
        probs = torch.softmax(scores, dim=1)  # one-vs-rest ranks by probability, not raw logit
        values = [_binary_auroc(probs[:, k], targets == k) for k in range(scores.shape[1])]
        values = [v for v in values if v == v]
        return sum(values) / len(values) if values else float("nan")


def _binary_auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Mann–Whitney U statistic with average ranks for ties."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each distinct score
    ranks = avg_rank[inverse]
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class _Regression(Metric):
    higher_is_better = False

    def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        target = target.float().reshape(output.shape) if target.numel() == output.numel() else target.float()
        t = target.double()
        err = output.double() - t  # subtract in float64: float32 rounding of the error shows in r2 near 0
        self._add("abs", err.abs().sum())
        self._add("sq", (err * err).sum())
        self._add("n", torch.tensor(float(err.numel()), device=err.device))
        self._add("t", t.sum())
        self._add("t2", (t * t).sum())


class MAE(_Regression):
    """Mean absolute error."""

    name = "mae"

    def compute(self) -> float:
        return float(self.state["abs"] / self.state["n"]) if self.state else float("nan")


class MSE(_Regression):
    """Mean squared error."""

    name = "mse"

    def compute(self) -> float:
        return float(self.state["sq"] / self.state["n"]) if self.state else float("nan")


class RMSE(_Regression):
    """Root mean squared error."""

    name = "rmse"

    def compute(self) -> float:
        return float((self.state["sq"] / self.state["n"]).sqrt()) if self.state else float("nan")


class R2(_Regression):
    """Coefficient of determination, 1 - SS_res / SS_tot."""

    name = "r2"
    higher_is_better = True

    def compute(self) -> float:
        if not self.state:
            return float("nan")
        n, t, t2 = self.state["n"], self.state["t"], self.state["t2"]
        ss_tot = t2 - t * t / n
        return float(1 - self.state["sq"] / ss_tot) if float(ss_tot) > 0 else float("nan")


METRICS: dict[str, type[Metric]] = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "error_rate": ErrorRate,
    "f1": F1Score,
    "auroc": AUROC,
    "auc": AUROC,
    "mae": MAE,
    "mse": MSE,
    "rmse": RMSE,
    "r2": R2,
}


def get_metric(metric: str | Metric) -> Metric:
    """A metric by name (``"accuracy"``, ``"f1"``, ``"auroc"``, ``"rmse"``, ...) or as given."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, type) and issubclass(metric, Metric):
        return metric()
    if not isinstance(metric, str):
        raise ConfigError(f"metric must be a name or a deepfit.metrics.Metric, got {metric!r}")
    key = metric.lower()
    if key not in METRICS:
        raise unknown_choice("metric", metric, METRICS)
    return METRICS[key]()


# ----------------------------------------------------------------------------- summaries of whole predictions


def classification_metrics(probs: torch.Tensor, codes: torch.Tensor) -> dict[str, float]:
    """accuracy, log_loss, f1 (binary: positive = second class; else macro) and auroc from probabilities."""
    log_probs = probs.clamp(min=1e-15).log()  # argmax and softmax of log p are those of p
    result = {}
    for metric in (Accuracy(), F1Score(), AUROC()):
        metric.update(log_probs, codes)
        result[metric.name] = metric.compute()
    result["log_loss"] = float(-log_probs.gather(1, codes.long().view(-1, 1)).mean())
    return result


def multilabel_metrics(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """accuracy (per label), subset_accuracy (every label of a row right), micro f1 and log_loss
    (mean binary cross-entropy) from per-label probabilities ``(N, C)`` and multi-hot ``y``."""
    pred = probs >= 0.5
    truth = y >= 0.5
    tp = float((pred & truth).sum())
    fp, fn = float((pred & ~truth).sum()), float((~pred & truth).sum())
    p = probs.clamp(1e-7, 1 - 1e-7)
    return {"accuracy": float((pred == truth).float().mean()),
            "subset_accuracy": float((pred == truth).all(dim=1).float().mean()),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
            "log_loss": float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())}


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """rmse, mae, r2 in the target's units."""
    err = pred.reshape(-1) - truth.reshape(-1)
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
    }
