"""Chapter 3 — Regularisation: the same network on MNIST-1D with weight decay, dropout, early
stopping, augmentation and label smoothing, one at a time and all together (one results table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import torch

    from deepfit import Learner
    from deepfit.augment import Augmented, SignalAugment
    from deepfit.engine.callbacks import EarlyStopping
    from deepfit.learn._common import accuracy, mnist1d, pyplot, save, seed_all, table
    from deepfit.models.mlp import MLP

    out_dir = Path(out_dir)
    d = mnist1d()
    n = 1500 if quick else len(d.x_train)
    cut = int(0.9 * n)  # 10% of the training signals validate (early stopping watches them)
    train, valid = (d.x_train[:cut], d.y_train[:cut]), (d.x_train[cut:n], d.y_train[cut:n])
    mean, std = torch.tensor(d.x_train[:cut].mean(0)), torch.tensor(d.x_train[:cut].std(0))
    epochs = 6 if quick else 60
    print(f"MNIST-1D: {cut} training signals of length 40, {n - cut} validation, {len(d.x_test)} test; "
          f"an MLP 256 x 256, {epochs} epochs each")

    # name -> (dropout, weight decay, label smoothing, early stopping, augmentation)
    methods = {
        "none": (0.0, 0.0, 0.0, False, False),
        "weight decay 0.5": (0.0, 0.5, 0.0, False, False),
        "dropout 0.3": (0.3, 0.0, 0.0, False, False),
        "early stopping": (0.0, 0.0, 0.0, True, False),
        "augmentation": (0.0, 0.0, 0.0, False, True),
        "label smoothing 0.1": (0.0, 0.0, 0.1, False, False),
        "all five": (0.3, 0.5, 0.1, True, True),
    }
    rows, curves = [], {}
    for name, (dropout, wd, smoothing, early, augment) in methods.items():
        seed_all(0)
        mlp = MLP(40, 10, hidden=(256, 256), dropout=dropout, mean=mean, std=std)
        net = Augmented(mlp, SignalAugment(max_shift=5, scale=(0.8, 1.2), noise=0.05)) if augment else mlp
        callbacks = [EarlyStopping("valid_loss", patience=5)] if early else []
        hist = Learner(net, train, valid, lr=1e-3, weight_decay=wd, label_smoothing=smoothing, batch_size=128,
                       metrics=["accuracy"], callbacks=callbacks, progress=False).fit(epochs)
        curves[name] = hist
        rows.append({"regulariser": name, "epochs run": len(hist), "train accuracy": accuracy(mlp, *train),
                     "test accuracy": accuracy(mlp, d.x_test, d.y_test)})
        rows[-1]["gap"] = rows[-1]["train accuracy"] - rows[-1]["test accuracy"]
    table(rows)

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["regulariser"] for r in rows]
    ax1.barh(names[::-1], [r["train accuracy"] for r in rows][::-1], color="lightgrey", label="train")
    bars = ax1.barh(names[::-1], [r["test accuracy"] for r in rows][::-1], color="tab:blue", label="test")
    ax1.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax1.set(xlabel="accuracy", title="Test accuracy (blue) and train accuracy (grey)", xlim=(0, 1.08))
    ax1.legend(loc="lower right", fontsize=8)
    for name in ("none", "dropout 0.3", "augmentation", "all five"):
        hist = curves[name]
        ax2.plot([h["epoch"] for h in hist], [h["valid_loss"] for h in hist], label=name)
    ax2.set(xlabel="epoch", ylabel="validation loss", title="Without regularisation validation loss turns up")
    ax2.legend(fontsize=8)
    save(fig, out_dir, "regularisation.png")
    return {"methods": {r["regulariser"]: {k: r[k] for k in ("train accuracy", "test accuracy", "epochs run")}
                        for r in rows}}
