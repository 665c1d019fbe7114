import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from deepfit.metrics import get_metric


def _compute(name, output, target, chunks=3):
    m = get_metric(name)
    for o, t in zip(torch.tensor_split(output, chunks), torch.tensor_split(target, chunks)):
        m.update(o, t)
    return m.compute()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(12, 80))
def test_classification_metrics_match_sklearn(seed, k, n):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g)
    target = torch.randint(0, k, (n,), generator=g)
    pred = logits.argmax(1).numpy()
    assert _compute("accuracy", logits, target) == pytest.approx(skm.accuracy_score(target, pred))
    assert _compute("error_rate", logits, target) == pytest.approx(1 - skm.accuracy_score(target, pred))
    average = "binary" if k == 2 else "macro"
    labels = None if k == 2 else sorted(set(target.tolist()) | set(pred.tolist()))
    assert _compute("f1", logits, target) == pytest.approx(
        skm.f1_score(target, pred, average=average, labels=labels, zero_division=0)
    )
    if len(set(target.tolist())) == k:
        probs = torch.softmax(logits, 1).numpy()
        expected = skm.roc_auc_score(target, probs[:, 1] if k == 2 else probs, multi_class="ovr", average="macro")
        assert _compute("auroc", logits, target) == pytest.approx(expected)


def test_binary_auroc_with_ties_and_single_logit():
    scores = torch.tensor([0.1, 0.4, 0.4, 0.8, 0.8, 0.2])
    target = torch.tensor([0, 1, 0, 1, 1, 0])
    assert _compute("auroc", scores, target, chunks=2) == pytest.approx(skm.roc_auc_score(target, scores))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 60))
def test_regression_metrics_match_sklearn(seed, n):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    p = y + rng.normal(scale=0.5, size=n)
    out, tgt = torch.tensor(p, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    yf, pf = tgt.double().numpy(), out.double().numpy()
    assert _compute("mae", out, tgt) == pytest.approx(skm.mean_absolute_error(yf, pf), rel=1e-6)
    assert _compute("mse", out, tgt) == pytest.approx(skm.mean_squared_error(yf, pf), rel=1e-6)
    assert _compute("rmse", out, tgt) == pytest.approx(np.sqrt(skm.mean_squared_error(yf, pf)), rel=1e-6)
    assert _compute("r2", out, tgt) == pytest.approx(skm.r2_score(yf, pf), rel=1e-6, abs=1e-9)


def test_column_outputs_for_regression():
    out = torch.tensor([[1.0], [2.0], [4.0]])
    assert _compute("mae", out, torch.tensor([1.0, 1.0, 1.0]), chunks=1) == pytest.approx(4 / 3)
