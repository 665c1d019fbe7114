"""The regression target's transform, chosen on validation rows for skewed non-negative targets."""

import numpy as np
import pandas as pd
import pytest

import deepfit
from deepfit.errors import ConfigError


def _prices(seed: int, n: int = 1500) -> pd.DataFrame:
    """Multiplicative effects, lognormal noise: a price-like target spanning three decades."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.exp(1.0 + 1.2 * x[:, 0] + 0.6 * x[:, 1] - 0.4 * x[:, 2] + 0.3 * rng.normal(size=n))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "price": y})


FAST = dict(target="price", task="regress", seed=0, progress=False, k=4, width=64, max_epochs=30, linear=False,
            target_transform="auto")


def test_a_skewed_target_is_learnt_better_with_the_transform_chosen_on_validation(tmp_path):
    df = _prices(0)
    auto = deepfit.fit(df, out=tmp_path / "auto", **FAST)
    plain = deepfit.fit(df, out=tmp_path / "plain", **{**FAST, "target_transform": "standard"})
    notes = [n for n in auto.info["notes"] if n.startswith("target transform:")]
    assert notes and notes[0].startswith("target transform: log1p"), auto.info["notes"]
    assert not any(n.startswith("target transform:") for n in plain.info["notes"])
    print(f"test RMSE auto (log1p) {auto.metrics['test_rmse']:.4f}, standardised {plain.metrics['test_rmse']:.4f}")
    assert auto.metrics["test_rmse"] < 0.95 * plain.metrics["test_rmse"]  # measured: 5.15 vs 5.59
    again = deepfit.load(tmp_path / "auto")  # the transform is part of the artifact
    rows = df.drop(columns="price").head(40)
    np.testing.assert_allclose(np.asarray(again.predict(rows)), np.asarray(auto.predict(rows)), rtol=1e-6)
    assert (np.asarray(again.predict(rows)) >= 0).all()


def test_a_symmetric_target_keeps_the_standard_transform_and_bad_values_are_refused():
    df = _prices(1, n=300)
    df["price"] = np.log(df["price"])  # roughly normal: not skewed, so no choice is made
    model = deepfit.fit(df, **{**FAST, "max_epochs": 2})
    assert not any(n.startswith("target transform:") for n in model.info["notes"])
    with pytest.raises(ConfigError, match="target_transform"):
        deepfit.fit(df, **{**FAST, "target_transform": "sqrt"})
