"""Chapter 1 — Learning from data: a baseline first, then a model that beats it, then one that
overfits, then regularise it (the universal workflow), on 4,454 real loans (credit scoring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def _matrix(train: Any, other: Any, target: str) -> tuple[Any, ...]:
    """One-hot categories, missing numbers filled with the training median: what a plain
    network needs (deepfit.fit does its own, richer preprocessing)."""
    import numpy as np
    import pandas as pd

    both = pd.get_dummies(pd.concat([train, other]).drop(columns=[target]), dummy_na=True, dtype=float)
    both = both.fillna(both.iloc[: len(train)].median())
    x = both.to_numpy(np.float32)
    classes = sorted(train[target].unique())
    y = np.concatenate([train[target], other[target]])
    y = np.searchsorted(classes, y).astype(np.int64)
    return x[: len(train)], y[: len(train)], x[len(train):], y[len(train):]


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    import deepfit
    from deepfit import Learner, datasets
    from deepfit.engine.callbacks import EarlyStopping
    from deepfit.learn._common import accuracy, pyplot, save, seed_all, table
    from deepfit.models.mlp import MLP

    out_dir = Path(out_dir)
    frame = datasets.rdataset("modeldata", "credit_data")
    if quick:
        frame = frame.sample(1500, random_state=0)
    train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame["Status"])
    print(f"credit_data: {len(frame)} loans, {frame.shape[1] - 1} columns; {len(train)} to learn from, "
          f"{len(test)} held out for the test")

    # 1. The baseline: always answer the most common class of the training rows.
    majority = train["Status"].mode()[0]
    base = float((test["Status"] == majority).mean())
    print(f"1. baseline: always say {majority!r}  ->  test accuracy {base:.3f}")

    # 2. A linear model (logistic regression) on one-hot categories and scaled numbers.
    x_tr, y_tr, x_te, y_te = _matrix(train, test, "Status")
    cut = int(0.8 * len(x_tr))  # the last 20% of the training rows validate
    fit_part, valid = (x_tr[:cut], y_tr[:cut]), (x_tr[cut:], y_tr[cut:])
    mean, std = torch.tensor(x_tr[:cut].mean(0)), torch.tensor(x_tr[:cut].std(0))
    epochs = 8 if quick else 100

    def network(hidden: tuple[int, ...], dropout: float = 0.0) -> MLP:
        seed_all(0)
        return MLP(x_tr.shape[1], 2, hidden=hidden, dropout=dropout, mean=mean, std=std)

    linear = network(())
    Learner(linear, fit_part, valid, lr=1e-2, batch_size=128, progress=False).fit(20 if quick else 60)
    lin = accuracy(linear, x_te, y_te)
    print(f"2. linear model (logistic regression)  ->  test accuracy {lin:.3f}")

    # 3. deepfit.fit: the table model with its defaults and a time limit.
    settings = dict(max_epochs=5, k=2, width=32, depth=1) if quick else dict(time_limit=30)
    model = deepfit.fit(train, target="Status", test=test, progress=False, seed=0, **settings)
    deep = float(model.metrics["test_accuracy"])
    print(f"3. deepfit.fit  ->  test accuracy {deep:.3f}")

    # 4. A network far too big for 2,700 rows, no regularisation, trained long: it overfits.
    big = network((512, 512, 512))
    over = Learner(big, fit_part, valid, lr=1e-3, weight_decay=0.0, batch_size=128, metrics=["accuracy"],
                   progress=False).fit(epochs)
    over_train, over_test = accuracy(big, x_tr[:cut], y_tr[:cut]), accuracy(big, x_te, y_te)
    print(f"4. 3 x 512 network, {epochs} epochs, no regularisation  ->  train accuracy {over_train:.3f}, "
          f"test accuracy {over_test:.3f}")

    # 5. The same network regularised: dropout, weight decay, and early stopping on validation loss.
    reg = network((512, 512, 512), dropout=0.5)
    stop = EarlyStopping("valid_loss", patience=10)
    regular = Learner(reg, fit_part, valid, lr=1e-3, weight_decay=0.1, batch_size=128, metrics=["accuracy"],
                      callbacks=[stop], progress=False).fit(epochs)
    reg_train, reg_test = accuracy(reg, x_tr[:cut], y_tr[:cut]), accuracy(reg, x_te, y_te)
    best = min(range(len(regular)), key=lambda i: regular[i]["valid_loss"]) + 1
    print(f"5. the same network with dropout 0.5, weight decay 0.1, early stopping  ->  stopped after "
          f"{len(regular)} epochs (best: epoch {best}), train accuracy {reg_train:.3f}, test accuracy {reg_test:.3f}")

    print()
    rows = [{"step": "1. majority class", "test accuracy": base},
            {"step": "2. linear model", "test accuracy": lin},
            {"step": "3. deepfit.fit", "test accuracy": deep},
            {"step": "4. big network, overfitting", "train accuracy": over_train, "test accuracy": over_test},
            {"step": "5. big network, regularised", "train accuracy": reg_train, "test accuracy": reg_test}]
    table(rows, ["step", "train accuracy", "test accuracy"])

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for hist, name, colour in ((over, "overfitting", "tab:red"), (regular, "regularised", "tab:blue")):
        ep = [h["epoch"] for h in hist]
        ax1.plot(ep, [h["train_loss"] for h in hist], color=colour, linestyle="--", label=f"{name}: training")
        ax1.plot(ep, [h["valid_loss"] for h in hist], color=colour, label=f"{name}: validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Training loss falls; validation loss tells the truth")
    ax1.set_ylim(0, max(1.5, min(3.0, max(h["valid_loss"] for h in over) * 1.05)))
    ax1.legend(fontsize=8)
    names = ["majority\nclass", "linear", "deepfit.fit", "big net\noverfit", "big net\nregularised"]
    values = [base, lin, deep, over_test, reg_test]
    bars = ax2.bar(names, values, color=["grey", "tab:olive", "tab:green", "tab:red", "tab:blue"])
    ax2.bar_label(bars, fmt="%.3f", fontsize=8)
    ax2.set_ylim(min(values) - 0.05, max(values) + 0.04)
    ax2.set(ylabel="test accuracy", title="The workflow, step by step")
    save(fig, out_dir, "workflow.png")
    return {"majority": base, "linear": lin, "deepfit": deep, "overfit_train": over_train, "overfit_test": over_test,
            "regularised_train": reg_train, "regularised_test": reg_test, "regularised_epochs": len(regular)}
