"""A time budget sizes the tabular ensemble and shapes its learning rate (tasks/table/sizing.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

import deepfit
from deepfit.engine.schedules import TimeCosine
from deepfit.errors import ConfigError
from deepfit.tasks.table.sizing import choose_k, time_train_step


def test_choose_k_keeps_members_while_the_budget_pays_for_the_epochs():
    step_s = {16: 0.17, 1: 0.02}  # 0.01 s per member, 0.01 s fixed
    kw = dict(step_s=step_s, steps_per_epoch=100, k_max=16, min_epochs=20)
    assert choose_k(seconds=20 * 100 * 0.1701, **kw) == 16  # just enough for k=16
    assert choose_k(seconds=20 * 100 * 0.17 - 1, **kw) == 8
    assert choose_k(seconds=20 * 100 * 0.0501, **kw) == 4  # fixed 0.01 + 4 x 0.01
    assert choose_k(seconds=1.0, **kw) == 1  # nothing fits: one member, never zero
    assert choose_k(step_s={12: 0.13, 1: 0.02}, steps_per_epoch=1, seconds=1e9, k_max=12, min_epochs=1) == 8


def test_time_train_step_measures_a_real_step():
    model = torch.nn.Linear(4, 1)
    before = model.weight.detach().clone()
    s = time_train_step(model, [torch.randn(8, 4)], torch.randn(8, 1), torch.nn.functional.mse_loss)
    assert s > 0 and not torch.equal(before, model.weight)


def test_time_cosine_holds_then_decays():
    clock = {"spent": 0.0}
    s = TimeCosine(1e-2, 0, 0.01, hold=0.5, clock=lambda: clock["spent"])
    lrs = []
    for spent in (0.0, 0.49, 0.75, 1.0):
        clock["spent"] = spent
        lrs.append(s.lr(10, 10**6))
    assert lrs[0] == lrs[1] == pytest.approx(1e-2)  # full rate for the first half of the budget
    assert lrs[2] == pytest.approx(1e-2 * (0.01 + 0.99 * 0.5))  # half-way down the cosine
    assert lrs[3] == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="hold"):
        TimeCosine(1e-2, hold=1.0)


@pytest.fixture(scope="module")
def big_table():
    rng = np.random.default_rng(0)
    n = 12_000
    x = rng.normal(size=(n, 6))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    df["y"] = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=n)
    return df


def test_a_tight_budget_trains_fewer_members_and_the_artifact_keeps_them(big_table, tmp_path):
    model = deepfit.fit(big_table, target="y", time_limit=10, seed=0, progress=False)
    k = model.info["ensemble_k"]
    assert k < 16 and model.info["epochs"] >= 2
    assert set(model.info["sizing_step_s"]) == {"16", "1"}
    assert any("ensemble of" in note for note in model.info["notes"])
    assert model.metrics["test_r2"] > 0.5  # learnt in 10 s
    model.save(tmp_path / "m")
    again = deepfit.load(tmp_path / "m")
    assert again.model.k == k
    rows = big_table.drop(columns=["y"]).head(100)
    assert np.array_equal(model.predict(rows), again.predict(rows))


def test_no_time_limit_keeps_the_asked_ensemble(big_table):
    from deepfit.tasks.table import TableSettings, fit_table

    model = fit_table(big_table.head(600), TableSettings(target="y", k=4, max_epochs=2), progress=False)
    assert model.info["ensemble_k"] == 4 and model.info["sizing_step_s"] == {}


def test_budget_left_after_early_stopping_trains_more_models_averaged_as_one(tmp_path):
    from deepfit.models.tabular import TabularBag
    from deepfit.tasks.table import TableSettings, fit_table

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(x[:, 0] + x[:, 1] ** 2 > 1, "yes", "no"))
    settings = TableSettings(target="y", time_limit=30, patience=2, max_bags=3, k=4, width=32, seed=0)
    model = fit_table(df, settings, progress=False)
    assert model.info["bags"] == 3 == len(model.info["bag_epochs"])  # early stopping left plenty of budget
    assert isinstance(model.model, TabularBag) and model.model.config()["bags"] == 3
    assert model.metrics["test_accuracy"] > 0.85
    model.save(tmp_path / "m")
    again = deepfit.load(tmp_path / "m")
    assert isinstance(again.model, TabularBag)
    # the extra models alternate the number embedding: a more diverse average
    assert [m.ple_version for m in again.model.bags] == ["b", "a", "b"] == model.model.config()["ple_versions"]
    rows = df.drop(columns=["y"])
    assert np.array_equal(model.predict_proba(rows).to_numpy(), again.predict_proba(rows).to_numpy())
    # the bag predicts the mean over its models of their members' probabilities
    _, inputs = model._encode(rows.head(20), "rows")
    with torch.no_grad():
        each = [m(*inputs).softmax(-1).mean(1) for m in model.model.bags]  # (B, C) per model
    expected = torch.stack(each).mean(0)
    assert np.allclose(model.predict_proba(rows.head(20)).to_numpy(), expected.numpy(), atol=1e-6)
    # cross-fitted: each model early-stopped on its own carve-out of the training rows, and blends
    # its own linear part (fitted on its own rows) by the share its own validation rows chose
    notes = " | ".join(model.info["notes"])
    assert "each early-stopped on its own validation rows" in notes
    assert "each model's share chosen on its own validation rows" in notes
    biases = [m.lin_bias.clone() for m in again.model.bags]
    assert not torch.equal(biases[0], biases[1]) and not torch.equal(biases[1], biases[2])


def test_without_cross_fit_the_extra_models_share_the_first_carve_out_and_its_linear_part():
    from deepfit.tasks.table import TableSettings, fit_table

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(x[:, 0] + x[:, 1] ** 2 > 1, "yes", "no"))
    settings = TableSettings(target="y", time_limit=30, patience=2, max_bags=2, k=4, width=32, seed=0, cross_fit=False)
    model = fit_table(df, settings, progress=False)
    assert model.info["bags"] == 2
    first, second = model.model.bags
    assert torch.equal(first.lin_bias, second.lin_bias) and first.lin_alpha.item() == second.lin_alpha.item()
    assert "own validation rows" not in " | ".join(model.info["notes"])


def test_an_artifact_asking_for_absurd_bags_is_refused_before_building(tmp_path):
    import json

    from deepfit.artifact import ArtifactError
    from deepfit.tasks.table import TableSettings, fit_table

    df = pd.DataFrame({"a": np.arange(200.0) % 13, "y": np.arange(200.0) % 7})
    fit_table(df, TableSettings(target="y", k=2, width=8, max_epochs=1), progress=False).save(tmp_path / "m")
    meta_path = tmp_path / "m" / "deepfit.json"
    meta = json.loads(meta_path.read_text())
    for bad in (10**9, 0, "3"):
        meta["model"]["config"]["bags"] = bad
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(ArtifactError, match="bags"):
            deepfit.load(tmp_path / "m")


def test_ple_versions_in_an_artifact_are_checked_and_old_artifacts_load_as_version_a(tmp_path):
    import json

    from deepfit.artifact import ArtifactError
    from deepfit.tasks.table import TableSettings, fit_table

    df = pd.DataFrame({"a": np.arange(200.0) % 13, "y": np.arange(200.0) % 7})
    models = {}
    for version in ("a", "b"):
        models[version] = fit_table(df, TableSettings(target="y", k=2, width=8, max_epochs=1, ple_version=version),
                                    progress=False)
        models[version].save(tmp_path / version)
        assert deepfit.load(tmp_path / version).model.ple_version == version
    # An artifact written before ple_version was stored (format 1): its config has no such key, and it was "a".
    meta_path = tmp_path / "a" / "deepfit.json"
    meta = json.loads(meta_path.read_text())
    del meta["model"]["config"]["ple_version"]
    meta["format_version"] = 1
    meta_path.write_text(json.dumps(meta))
    old = deepfit.load(tmp_path / "a")
    assert old.model.ple_version == "a"
    rows = df.drop(columns=["y"])
    assert np.array_equal(old.predict_proba(rows).to_numpy(), models["a"].predict_proba(rows).to_numpy())
    for bad in (["b", "a"], "b", ["c"]):
        meta["model"]["config"]["ple_versions"] = bad
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(ArtifactError, match="ple_version"):
            deepfit.load(tmp_path / "a")
    with pytest.raises(ConfigError, match="ple_version"):
        TableSettings(target="y", ple_version="z")


def test_settings_of_a_run_from_before_the_embedding_options_resume_as_they_started():
    from deepfit.tasks.table import TableSettings

    now = TableSettings(target="y")
    assert (now.ple_version, now.mix_bags, now.monitor) == ("b", True, "auto")
    assert TableSettings.from_json(now.to_json()) == now
    # run.json of that time: no version (1), and none of these keys
    old = {k: v for k, v in now.flat_json().items() if k not in ("version", "ple_version", "mix_bags", "monitor")}
    again = TableSettings.from_json(old)
    assert (again.ple_version, again.mix_bags, again.monitor) == ("a", False, "metric")
