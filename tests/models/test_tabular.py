"""TabularModel: PLE exactness, shapes, zero-column groups, ensemble loss/predict, and a small fit learns."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from deepfit import Learner
from deepfit.errors import ConfigError
from deepfit.features.preprocessor import TablePreprocessor
from deepfit.features.target import make_target
from deepfit.models.tabular import TabularModel, ensemble_loss, ensemble_predict

SPEC = {"n_num": 3, "num_bins": [[0.0, 1.0, 3.0], None, [-1.0, 0.0, 1.0, 2.0, 4.0]],
        "cat_cardinalities": [5, 2], "n_text": 2, "text_buckets": 1000, "token_vocab": 50, "max_tokens": 8}


def inputs(b=6, spec=SPEC, seed=0):
    g = torch.Generator().manual_seed(seed)
    cards = spec["cat_cardinalities"]
    cat = torch.zeros(b, len(cards), dtype=torch.long)
    for j, c in enumerate(cards):
        cat[:, j] = torch.randint(0, c, (b,), generator=g)
    text = torch.randint(0, spec["text_buckets"], (b, spec["n_text"], 8), generator=g)
    text[:, :, 5:] = 0  # padding
    base = (torch.randn(b, spec["n_num"], generator=g), cat, text)
    if not spec["n_text"]:
        return base
    weights = torch.rand(b, spec["n_text"], 8, generator=g) * (text > 0)
    tokens = torch.randint(1, spec["token_vocab"], (b, spec["n_text"], 6), generator=g)
    tokens[:, :, 4:] = 0
    return (*base, weights, tokens)


def test_ple_is_exact_on_known_edges():
    model = TabularModel(SPEC, n_outputs=2, k=2, width=8)
    x = torch.tensor([[-1.0, 7.0, -3.0], [0.0, 0.0, -1.0], [0.5, 0.0, 0.5], [1.0, 0.0, 2.0], [2.0, 0.0, 3.0],
                      [5.0, 0.0, 6.0]])
    enc = model.ple_encode(x)  # (B, J, T=4)
    assert enc.shape == (6, 3, 4)
    # column 0: edges 0, 1, 3 → 2 bins; the first extends below, the last above; padding stays 0
    assert enc[:, 0].tolist() == [[-1, 0, 0, 0], [0, 0, 0, 0], [0.5, 0, 0, 0], [1, 0, 0, 0], [1, 0.5, 0, 0],
                                  [1, 2, 0, 0]]
    # column 1: no bins → the value itself in bin 0
    assert enc[:, 1, 0].tolist() == [7, 0, 0, 0, 0, 0] and enc[:, 1, 1:].abs().sum() == 0
    # column 2: edges -1, 0, 1, 2, 4 (x = -3, -1, 0.5, 2, 3, 6)
    assert enc[:, 2].tolist() == [[-2, 0, 0, 0], [0, 0, 0, 0], [1, 0.5, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0.5],
                                  [1, 1, 1, 2]]
    plain = TabularModel(SPEC, n_outputs=2, k=2, width=8, ple=False)
    assert plain.ple_encode(x).shape == (6, 3, 1) and torch.equal(plain.ple_encode(x)[..., 0], x)


def test_ple_version_b_starts_linear_and_adds_the_piecewise_part():
    """Version B (the TabM default): x * w + b per column plus a zero-initialised PLE map, no ReLU."""
    model = TabularModel(SPEC, n_outputs=2, k=2, width=8)
    assert model.ple_version == "b"
    x = torch.randn(5, 3)
    b, d = 5, model.d_embed

    def numbers_in(m):  # the MLP input's number part, recovered by capturing it
        seen = {}
        handle = m.mlp.register_forward_pre_hook(lambda mod, args: seen.setdefault("h", args[0]))
        m.eval()
        m(x, *inputs(b)[1:])
        handle.remove()
        return (seen["h"] / m.adapter)[:, 0, : 3 * d].reshape(b, 3, d)  # (B, J, d)

    linear = x[:, :, None] * model.num_linear + model.num_bias  # (B, J, d)
    assert torch.allclose(numbers_in(model), linear, atol=1e-5)  # at start: linear, negative values kept
    assert (linear < 0).any()
    with torch.no_grad():
        model.num_weight.normal_()
    ple = torch.einsum("bjt,jtd->bjd", model.ple_encode(x), model.num_weight)
    assert torch.allclose(numbers_in(model), linear + ple, atol=1e-5)
    with pytest.raises(ConfigError, match="ple_version"):
        TabularModel(SPEC, n_outputs=2, ple_version="c")


def test_shapes_config_and_parameter_count():
    model = TabularModel(SPEC, n_outputs=3, k=4, width=32, depth=2)
    out = model(*inputs())
    assert out.shape == (6, 4, 3)
    config = model.config()
    assert json.loads(json.dumps(config)) == config
    again = TabularModel(SPEC, n_outputs=3, **config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert not any(k.startswith("ple_") for k in model.state_dict())  # rebuilt from the spec, not saved
    d_in = 3 * 16 + 2 * 16  # the wide text part goes straight to the logits; no deep part by default
    expected = ((3 * 4 * 16 + 3 * 16) + 3 * 16 + 7 * 16 + 1000 * 3  # PLE and value linears, categories, n-grams
                + 4 * d_in + (d_in * 32 + 32) + (32 * 32 + 32) + 4 * (32 * 3 + 3))  # adapters, MLP, heads
    assert sum(p.numel() for p in model.parameters()) == expected
    default = TabularModel({"n_num": 10, "num_bins": [[0.0, 1.0]] * 10, "cat_cardinalities": [], "n_text": 0,
                            "text_buckets": 2**18}, n_outputs=2)
    assert 100_000 < sum(p.numel() for p in default.parameters()) < 300_000  # 3x256 shared MLP, 16 members


@pytest.mark.parametrize("drop", ["num", "cat", "text", "num+cat"])
def test_zero_column_groups(drop):
    spec = dict(SPEC)
    if "num" in drop:
        spec.update(n_num=0, num_bins=[])
    if "cat" in drop:
        spec.update(cat_cardinalities=[])
    if "text" in drop:
        spec.update(n_text=0)
    model = TabularModel(spec, n_outputs=1, k=3, width=16)
    out = model(*inputs(spec=spec))
    assert out.shape == (6, 3, 1) and torch.isfinite(out).all()
    ensemble_loss(out, torch.randn(6), "regress").backward()


def test_bad_spec_and_inputs_raise():
    with pytest.raises(ConfigError, match="at least one input"):
        TabularModel({"n_num": 0, "num_bins": [], "cat_cardinalities": [], "n_text": 0, "text_buckets": 8}, n_outputs=2)
    with pytest.raises(ConfigError, match="lacks"):
        TabularModel({"n_num": 1}, n_outputs=2)
    with pytest.raises(ConfigError, match="strictly increasing"):
        TabularModel({**SPEC, "num_bins": [[0.0, 0.0], None, None]}, n_outputs=2)
    model = TabularModel(SPEC, n_outputs=2, k=2, width=8)
    x_num, x_cat, x_text, x_w, x_tok = inputs()
    with pytest.raises(ConfigError, match="expects 3 number"):
        model(x_num[:, :2], x_cat, x_text, x_w, x_tok)
    with pytest.raises(ConfigError, match="expects 5 inputs"):
        model(x_num, x_cat, x_text)


def test_wide_text_part_is_a_tfidf_linear_model_and_deep_part_runs():
    spec = {**SPEC, "n_num": 0, "num_bins": [], "cat_cardinalities": []}
    model = TabularModel(spec, n_outputs=2, k=2, width=8).eval()
    x = inputs(spec=spec)
    with torch.no_grad():
        model.text_linear.weight.normal_()
        w = model.text_linear.weight
        expected = (w[x[2]] * x[3].unsqueeze(-1)).sum((1, 2))  # (B, C): sum over columns and n-grams
        # Text alone without a deep part: the MLP sees the constant 1 (scaled by each member's adapter).
        hidden = model.mlp(model.adapter[:, :1].expand(6, -1, -1))  # (B, k, W)
        base = torch.einsum("bkw,kwc->bkc", hidden, model.head_weight) + model.head_bias
        assert torch.allclose(model(*x), base + expected.unsqueeze(1), atol=1e-5)
    deep = TabularModel(spec, n_outputs=2, k=2, width=8, text_dim=16, text_layers=1)
    out = deep(*x)
    assert out.shape == (6, 2, 2)
    ensemble_loss(out, torch.tensor([0, 1] * 3), "classify").backward()
    assert deep.text_encoder.embed.weight.grad.abs().sum() > 0


def test_sequence_input_uses_the_masked_resnet():
    spec = {"n_num": 0, "num_bins": [], "cat_cardinalities": [], "n_text": 0, "text_buckets": 1, "seq_channels": 2}
    model = TabularModel(spec, n_outputs=3, k=2, width=8, seq_widths=(8, 8), seq_strides=(1, 2)).eval()
    seq, mask = torch.randn(4, 2, 12), torch.ones(4, 12)
    mask[1, 6:] = 0
    seq[1, :, 6:] = 0
    empty = torch.zeros(4, 0, 1, dtype=torch.long)
    out = model(torch.zeros(4, 0), torch.zeros(4, 0, dtype=torch.long), empty, seq, mask)
    assert out.shape == (4, 2, 3)
    longer = torch.cat([seq, torch.zeros(4, 2, 4)], 2)  # more padding must not change a masked row
    out2 = model(torch.zeros(4, 0), torch.zeros(4, 0, dtype=torch.long), empty, longer,
                 torch.cat([mask, torch.zeros(4, 4)], 1))
    assert torch.allclose(out[1], out2[1], atol=1e-5)
    model.train()
    ensemble_loss(model(torch.zeros(4, 0), torch.zeros(4, 0, dtype=torch.long), empty, seq, mask),
                  torch.tensor([0, 1, 2, 0]), "classify").backward()


def test_ensemble_loss_and_predict():
    out = torch.randn(5, 4, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    per_member = torch.stack([torch.nn.functional.cross_entropy(out[:, i], y, label_smoothing=0.1) for i in range(4)])
    assert ensemble_loss(out, y, "classify", 0.1).item() == pytest.approx(per_member.mean().item(), rel=1e-6)
    probs = ensemble_predict(out, "classify")
    assert probs.shape == (5, 3) and torch.allclose(probs.sum(1), torch.ones(5))
    assert torch.allclose(probs, out.softmax(-1).mean(1))
    reg = torch.randn(5, 4, 1)
    t = torch.randn(5)
    assert ensemble_loss(reg, t, "regress").item() == pytest.approx(((reg[..., 0] - t[:, None]) ** 2).mean().item())
    assert torch.allclose(ensemble_predict(reg, "regress"), reg[..., 0].mean(1))
    with pytest.raises(ConfigError):
        ensemble_predict(out, "rank")


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(-2, 2, size=n)
    noise = rng.lognormal(size=n)
    c = rng.choice(list("abcdef"), size=n).astype(object)
    x1[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"x1": x1, "x2": x2, "noise": noise, "c": pd.Series(c, dtype=object)})


def _fit(df, y, task, n_train, epochs):
    columns = {"x1": "number", "x2": "number", "noise": "number", "c": "category"}
    tr, te = df.iloc[:n_train], df.iloc[n_train:].reset_index(drop=True)
    pre = TablePreprocessor(columns).fit(tr)
    target = make_target(task, "y").fit(y.iloc[:n_train])
    tensors = [torch.from_numpy(a) for a in pre.transform(tr)] + [torch.from_numpy(target.encode(y.iloc[:n_train]))]
    torch.manual_seed(0)
    model = TabularModel(pre.spec(), n_outputs=target.n_outputs, k=8, width=64)
    smoothing = 0.1 if task == "classify" else 0.0
    learner = Learner(model, tuple(tensors), loss=lambda o, t: ensemble_loss(o, t, task, smoothing), lr=2e-3,
                      weight_decay=3e-4, batch_size=128, progress=False, compile=False, precision="32", seed=0)
    learner.fit(epochs)
    model.eval()
    with torch.no_grad():
        pred = ensemble_predict(model(*[torch.from_numpy(a) for a in pre.transform(te)]), task)
    return pred, target, y.iloc[n_train:].to_numpy()


def test_small_classification_fit_learns_a_nonlinear_rule():
    df = _frame(1500, seed=1)
    x1 = np.nan_to_num(df["x1"].to_numpy())
    rule = (np.sin(2 * x1) + (df["x2"].to_numpy() ** 2 > 1) + df["c"].isin(["b", "e"]).to_numpy()) > 1
    y = pd.Series(np.where(rule, "yes", "no"), dtype=object)
    probs, target, truth = _fit(df, y, "classify", 1200, epochs=12)
    acc = (target.decode(probs.argmax(1).numpy()) == truth).mean()
    majority = max(rule[1200:].mean(), 1 - rule[1200:].mean())
    assert acc > 0.92 and acc > majority + 0.25, (acc, majority)


def test_small_regression_fit_reaches_r2():
    df = _frame(1500, seed=2)
    x1 = np.nan_to_num(df["x1"].to_numpy())
    signal = 100 + 20 * np.sin(2 * x1) + 15 * np.abs(df["x2"].to_numpy()) + 10 * (df["c"] == "a").to_numpy()
    y = pd.Series(signal + np.random.default_rng(3).normal(scale=2.0, size=1500))
    pred, target, truth = _fit(df, y, "regress", 1200, epochs=12)
    values = target.decode(pred.numpy())
    r2 = 1 - ((values - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert r2 > 0.92, r2
