import math

import numpy as np
import pytest
import torch
from torch import nn

from deepfit import Learner, datasets
from deepfit.engine.schedules import CosineWarmup, OneCycle
from deepfit.errors import ConfigError, DataError
from deepfit.models.mlp import MLP


def _mlp(d_in=8, d_out=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, d_out))


def test_loss_falls_and_metrics_reported(blobs):
    x, y, xv, yv = blobs
    learn = Learner(_mlp(), (x, y), (xv, yv), metrics=["accuracy", "f1"], lr=1e-2, progress=False)
    history = learn.fit(5)
    assert len(history) == 5
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["valid_accuracy"] > 0.85
    assert set(history[-1]) >= {"epoch", "train_loss", "valid_loss", "valid_accuracy", "valid_f1", "lr", "time"}


def test_digits_mlp_reaches_95_percent():
    d = datasets.load("digits")
    x, y = torch.from_numpy(d.x_train), torch.from_numpy(d.y_train)
    torch.manual_seed(0)
    model = MLP(64, 10, hidden=(128,), mean=x.mean(0), std=x.std(0))
    learn = Learner(model, (x, y), metrics=["accuracy"], lr=3e-3, batch_size=64, progress=False)
    learn.fit_one_cycle(10)
    test = learn.validate((d.x_test, d.y_test))
    assert test["accuracy"] >= 0.95, test


def test_numpy_inputs_and_auto_loss_for_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))  # float64: becomes float32
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=400)
    torch.manual_seed(0)
    learn = Learner(nn.Linear(3, 1), (x, y), (x, y), metrics=["rmse", "r2", "mae"], lr=0.05, progress=False)
    history = learn.fit(10)
    assert learn.loss_name == "mse"
    assert history[-1]["valid_r2"] > 0.98
    assert history[-1]["valid_rmse"] < 0.3


def test_schedules_drive_the_learning_rate(blobs):
    x, y, _, _ = blobs
    from deepfit import Callback

    seen = []

    class Record(Callback):
        def on_batch_end(self, learner):
            seen.append(learner.optimizer.param_groups[0]["lr"])

    learn = Learner(_mlp(), (x, y), lr=1e-2, batch_size=48, progress=False, callbacks=[Record()])  # 10 steps/epoch
    learn.fit_one_cycle(4, 1e-2)
    sched = OneCycle(1e-2)
    assert seen == pytest.approx([sched.lr(i, 40) for i in range(40)])
    assert max(seen) == pytest.approx(1e-2, rel=1e-3) and seen[-1] < 1e-4
    seen.clear()
    learn.fit(4, schedule=CosineWarmup(1e-2, warmup=0.25))
    assert seen[0] < seen[9] and seen[9] == pytest.approx(1e-2, rel=0.1) and seen[-1] < 2e-3


def test_predict_shapes_and_eval_mode(blobs):
    x, y, xv, yv = blobs
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    learn = Learner(model, (x, y), (xv, yv), progress=False)
    p1, p2 = learn.predict(xv), learn.predict(xv)
    assert p1.shape == (120, 3)
    assert torch.equal(p1, p2)  # dropout is off in predict
    assert learn.predict().shape == (120, 3)  # default: validation inputs


def test_same_seed_same_weights(blobs):
    x, y, _, _ = blobs

    def run():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
        Learner(model, (x, y), lr=1e-2, seed=7, progress=False).fit(2)
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_matches_bigger_batch(blobs):
    x, y, _, _ = blobs
    results = []
    for bs, acc in ((64, 1), (32, 2)):
        torch.manual_seed(0)
        model = _mlp()
        # shuffle off: the same 64 samples form each optimizer step in both runs
        Learner(model, (x, y), lr=1e-2, batch_size=bs, accumulate=acc, shuffle=False, progress=False).fit(2)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_grad_clip_bounds_the_update(blobs):
    x, y, _, _ = blobs

    def step_size(clip):
        torch.manual_seed(0)
        model = _mlp()
        before = [p.detach().clone() for p in model.parameters()]
        Learner(model, (x * 1000, y), optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=480,
                grad_clip=clip, progress=False).fit(1)  # one full-batch step
        return float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before))))

    # Nesterov SGD's first step is lr * 1.9 * grad; clipping bounds grad's norm by 0.01.
    assert step_size(0.01) <= 0.1 * 1.9 * 0.01 * 1.0001
    assert step_size(None) > 100 * step_size(0.01)


def test_lr_find_suggests_and_leaves_model_unchanged(blobs, tmp_path):
    x, y, _, _ = blobs
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn = Learner(model, (x, y), batch_size=32, progress=False)
    result = learn.lr_find(num_it=60)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert 1e-5 < result.suggestion < 1.0
    assert len(result.lrs) == len(result.losses) > 10
    png = result.plot(tmp_path / "lr.png")
    assert png.stat().st_size > 1000


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    learn = Learner(model, (torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), weight_decay=0.1, progress=False)
    groups = learn.optimizer.param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim >= 2), name


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "rmsprop"])
def test_optimizers_by_name_learn(blobs, name):
    x, y, xv, yv = blobs
    lr = {"sgd": 0.05, "rmsprop": 1e-3}.get(name, 1e-2)
    learn = Learner(_mlp(), (x, y), (xv, yv), optimizer=name, lr=lr, metrics=["accuracy"], progress=False)
    history = learn.fit(4)
    assert history[-1]["valid_accuracy"] > 0.8


def test_dataset_and_dataloader_inputs(blobs):
    x, y, xv, yv = blobs
    ds = torch.utils.data.TensorDataset(x, y)
    learn = Learner(_mlp(), ds, torch.utils.data.TensorDataset(xv, yv), metrics=["accuracy"], lr=1e-2, progress=False)
    assert learn.fit(4)[-1]["valid_accuracy"] > 0.85
    dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)
    learn = Learner(_mlp(), dl, (xv, yv), metrics=["accuracy"], lr=1e-2, progress=False)
    assert learn.fit(4)[-1]["valid_accuracy"] > 0.85


def test_multiple_inputs_are_passed_positionally():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(3, 1)

        def forward(self, xa, xb):
            return (self.a(xa) + self.b(xb)).squeeze(1)

    xa, xb = torch.randn(200, 2), torch.randn(200, 3)
    y = xa[:, 0] - xb[:, 2]
    learn = Learner(Two(), (xa, xb, y), (xa, xb, y), lr=0.05, progress=False)
    assert learn.fit(10)[-1]["valid_loss"] < 0.05


def test_bad_arguments_name_the_value_and_fix():
    model = nn.Linear(2, 2)
    data = (torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="did you mean 'adamw'"):
        Learner(model, data, optimizer="adamww")
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        Learner(model, data, metrics=["acuracy"])
    with pytest.raises(ConfigError, match="lr must be > 0"):
        Learner(model, data, lr=0)
    with pytest.raises(ConfigError, match="checkpoint_every needs out_dir"):
        Learner(model, data, checkpoint_every=5)
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        Learner(model, data, progress=False).fit(0)
    with pytest.raises(DataError, match=r"train\[1\] has 3"):
        Learner(model, (torch.randn(4, 2), torch.zeros(3)), progress=False).fit(1)
    with pytest.raises(DataError, match="dtype <U1"):
        Learner(model, (np.array(["a", "b"]), np.zeros(2)), progress=False).fit(1)
    with pytest.raises(ConfigError, match="needs a GPU"):
        Learner(model, data, precision="fp16", device="cpu")


def test_bf16_autocast_trains_on_cpu(blobs):
    x, y, xv, yv = blobs
    learn = Learner(_mlp(), (x, y), (xv, yv), precision="bf16", lr=1e-2, metrics=["accuracy"], progress=False)
    history = learn.fit(4)
    assert math.isfinite(history[-1]["train_loss"]) and history[-1]["valid_accuracy"] > 0.8
