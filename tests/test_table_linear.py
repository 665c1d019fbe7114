"""The linear part of table models (tasks/table/linear.py): what it fits, how its strength is
chosen, and that it makes id-like columns learnable through the API."""

import numpy as np
import pandas as pd
import pytest
import torch

import deepfit
from deepfit.models.tabular import TabularModel
from deepfit.tasks.table import TableSettings
from deepfit.tasks.table.linear import choose_alpha, fit_linear_part


def _rows(x_num: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return x_num, x_cat, torch.zeros(len(y), 0, 1, dtype=torch.long), y


def test_linear_part_fits_an_additive_curve_and_shrinks_levels_by_their_count():
    g = torch.Generator().manual_seed(0)
    n = 2000
    x = torch.randn(n, 1, generator=g)
    levels = torch.randint(1, 6, (n, 1), generator=g)  # codes 1..5 (0 = unknown)
    effect = torch.tensor([0.0, 1.0, -1.0, 0.5, 0.0, -0.5])
    y = x[:, 0].abs() + effect[levels[:, 0]] + 0.1 * torch.randn(n, generator=g)  # |x|: not a line
    edges = [float(v) for v in np.quantile(x.numpy(), np.linspace(0, 1, 9))]
    spec = {"n_num": 1, "num_bins": [edges], "cat_cardinalities": [6], "n_text": 0, "text_buckets": 1}
    model = TabularModel(spec, n_outputs=1, k=2, width=8, depth=1, linear=True)
    rows = _rows(x, levels, y)
    fit = fit_linear_part(model, rows, rows, task="regress", strengths=(1e-3,))
    fit.install(model)
    model.eval()
    model.lin_alpha.fill_(1.0)  # the linear part alone
    with torch.no_grad():
        pred = model(*rows[:3]).mean(1)[:, 0]
    assert float((pred - y).square().mean().sqrt()) < 0.2  # the curve and the levels, not a line

    # A single level column under strength lam: its weight is the sum of its residuals over (count + lam).
    counts = torch.tensor([0, 400, 40, 4])
    codes = torch.cat([torch.full((int(c),), i) for i, c in enumerate(counts) if c]).reshape(-1, 1)
    target = torch.tensor([0.0, 1.0, -1.0, 2.0])[codes[:, 0]]
    spec = {"n_num": 0, "num_bins": [], "cat_cardinalities": [4], "n_text": 0, "text_buckets": 1}
    model = TabularModel(spec, n_outputs=1, k=2, width=8, depth=1, linear=True)
    rows = _rows(torch.zeros(len(codes), 0), codes, target)
    lam = 30.0
    fit = fit_linear_part(model, rows, rows, task="regress", strengths=(lam,))
    resid = target - fit.weights["lin_bias"][0]
    kept = []
    for level in (1, 2, 3):
        m = int(counts[level])
        expected = float(resid[codes[:, 0] == level].sum()) / (m + lam)
        assert float(fit.weights["lin_cat"][level, 0]) == pytest.approx(expected, abs=2e-3)
        kept.append(float(fit.weights["lin_cat"][level, 0]) / float(resid[codes[:, 0] == level].mean()))
    assert kept[0] > 0.9 and kept[2] < 0.2  # the share of its own mean a level keeps: m / (m + lam)


def test_strength_is_chosen_on_the_validation_rows():
    g = torch.Generator().manual_seed(1)
    n, levels = 600, 200
    codes = torch.randint(1, levels + 1, (2 * n, 1), generator=g)
    y = 0.3 * torch.randn(levels + 1, generator=g)[codes[:, 0]] + torch.randn(2 * n, generator=g)  # noisy levels
    spec = {"n_num": 0, "num_bins": [], "cat_cardinalities": [levels + 1], "n_text": 0, "text_buckets": 1}
    model = TabularModel(spec, n_outputs=1, k=2, width=8, depth=1, linear=True)
    train = _rows(torch.zeros(n, 0), codes[:n], y[:n])
    valid = _rows(torch.zeros(n, 0), codes[n:], y[n:])
    fit = fit_linear_part(model, train, valid, task="regress")
    tried = dict(fit.path)
    assert fit.valid_loss == min(tried.values())
    assert fit.strength > min(tried)  # three rows per level of mostly noise: strong shrinkage wins
    assert "chosen on the validation rows" in fit.note()


def _ids_table(seed: int) -> pd.DataFrame:
    """Random effects: 300 persons seen 4 times, their own level plus a weak number effect."""
    rng = np.random.default_rng(seed)
    persons = np.repeat(np.arange(300), 4)
    effect = rng.normal(0, 1.0, 300)[persons]
    x = rng.normal(size=len(persons))
    y = effect + 0.5 * x + rng.normal(0, 0.5, len(persons))
    return pd.DataFrame({"person": [f"p{p}" for p in persons], "x": x, "y": y}).sample(frac=1, random_state=seed)


def test_linear_part_makes_an_id_column_learnable_and_reloads_exactly(tmp_path):
    df = _ids_table(0)
    settings = dict(target="y", task="regress", types={"person": "category"}, seed=0, progress=False,
                    k=4, width=64, max_epochs=40, test_size=0.25)
    with_prior = deepfit.fit(df, out=tmp_path / "lin", **settings)
    without = deepfit.fit(df, linear=False, out=tmp_path / "plain", **settings)
    rmse_lin, rmse_plain = with_prior.metrics["test_rmse"], without.metrics["test_rmse"]
    print(f"test RMSE with the prior {rmse_lin:.4f}, without {rmse_plain:.4f}")
    assert rmse_lin < 0.95 * rmse_plain, (rmse_lin, rmse_plain)
    notes = with_prior.info["notes"]
    assert any(n.startswith("linear part: L2 strength") for n in notes), notes
    assert any(n.startswith("linear part: ") for n in notes), notes
    again = deepfit.load(tmp_path / "lin")
    frame = df.drop(columns="y").head(50)
    np.testing.assert_array_equal(np.asarray(with_prior.predict(frame)), np.asarray(again.predict(frame)))


def test_classifier_blend_and_old_settings_keep_no_linear_part():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(800, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    spec = {"n_num": 2, "num_bins": [None, None], "cat_cardinalities": [], "n_text": 0, "text_buckets": 1}
    model = TabularModel(spec, n_outputs=2, k=2, width=8, depth=1, linear=True)
    rows = _rows(x, torch.zeros(800, 0, dtype=torch.long), y)
    fit_linear_part(model, rows, rows, task="classify").install(model)
    alpha, losses = choose_alpha(model, rows, task="classify")  # an untrained network against a fitted line
    assert alpha == 1.0 and losses[1.0] < 0.5 * losses[0.0]
    with torch.no_grad():
        accuracy = float((model(*rows[:3]).mean(1).argmax(1) == y).float().mean())
    assert accuracy > 0.95
    with torch.no_grad():  # in training mode the linear part is left out: alpha is chosen after training
        lin_free = TabularModel(spec, n_outputs=2, k=2, width=8, depth=1, dropout=0.0, linear=True)
        plain = TabularModel(spec, n_outputs=2, k=2, width=8, depth=1, dropout=0.0)
        plain.load_state_dict({k: v for k, v in lin_free.state_dict().items() if not k.startswith("lin_")})
        lin_free.lin_bias.fill_(5.0)
        lin_free.lin_alpha.fill_(0.5)
        assert torch.allclose(lin_free.train()(*rows[:3]), plain.train()(*rows[:3]))
    # A version-2 run.json (before the prior) resumes without it; today's default has it.
    old = TableSettings(target="y").flat_json()
    old["version"] = 2
    old.pop("linear")
    assert TableSettings.from_json(old).linear is False
    assert TableSettings(target="y").linear is True
    # A version-3 run.json (flat, before cross-fitted bags) resumes without cross-fitting.
    v3 = {**TableSettings(target="y").flat_json(), "version": 3}
    v3.pop("cross_fit")
    assert TableSettings.from_json(v3).cross_fit is False and TableSettings.from_json(v3).linear is True
    assert TableSettings(target="y").cross_fit is True
