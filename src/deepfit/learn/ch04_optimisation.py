"""Chapter 4 — Optimisation: plain SGD, SGD with momentum and AdamW on one network; the
learning-rate finder; a one-cycle schedule against a constant learning rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import torch

    from deepfit import Callback, Learner
    from deepfit.learn._common import accuracy, mnist1d, pyplot, save, seed_all, table
    from deepfit.models.mlp import MLP

    out_dir = Path(out_dir)
    d = mnist1d()
    n = 1500 if quick else len(d.x_train)
    train, test = (d.x_train[:n], d.y_train[:n]), (d.x_test, d.y_test)
    mean, std = torch.tensor(d.x_train[:n].mean(0)), torch.tensor(d.x_train[:n].std(0))
    epochs = 4 if quick else 25

    def network() -> MLP:
        seed_all(0)
        return MLP(40, 10, hidden=(256, 256), dropout=0.1, mean=mean, std=std)

    # 1. Three optimizers, each at a learning rate that suits it, the same epochs.
    optimizers = {
        "SGD, lr 0.05": (lambda groups: torch.optim.SGD(groups, lr=0.05), 0.05),
        "SGD + momentum 0.9, lr 0.05": (lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9), 0.05),
        "AdamW, lr 1e-3": ("adamw", 1e-3),
    }
    rows, losses = [], {}
    for name, (opt, lr) in optimizers.items():
        net = network()
        hist = Learner(net, train, test, optimizer=opt, lr=lr, batch_size=128, progress=False).fit(epochs)
        losses[name] = [h["train_loss"] for h in hist]
        rows.append({"optimizer": name, "final training loss": losses[name][-1],
                     "test accuracy": accuracy(net, *test)})
    table(rows)

    # 2. The learning-rate finder: one pass of rising learning rates, the model left as it was.
    learn = Learner(network(), train, test, batch_size=128, progress=False)
    found = learn.lr_find(num_it=60 if quick else 100)
    print(f"\nlr_find: suggestion {found.suggestion:.2g} (the valley rule); lowest loss at {found.lr_min * 10:.2g}")
    found.plot(out_dir / "lr_find.png")
    print("figure: lr_find.png")

    # 3. One-cycle against a constant learning rate, both with the finder's suggestion as the peak.
    class LRTrace(Callback):
        def __init__(self) -> None:
            self.lrs: list[float] = []

        def on_batch_end(self, learner: Any) -> None:
            self.lrs.append(learner.optimizer.param_groups[0]["lr"])

    lr = found.suggestion
    runs = {}
    for schedule in ("constant", "one_cycle"):
        trace = LRTrace()
        net = network()
        hist = Learner(net, train, test, lr=lr, batch_size=128, metrics=["accuracy"], callbacks=[trace],
                       progress=False).fit(epochs, schedule=schedule)
        runs[schedule] = (hist, trace.lrs, accuracy(net, *test))
        print(f"{schedule:>9s} learning rate {lr:.2g}: test accuracy {runs[schedule][2]:.3f}")

    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, curve in losses.items():
        ax1.plot(range(1, len(curve) + 1), curve, label=name)
    ax1.set(xlabel="epoch", ylabel="training loss", title="Three optimizers, one network")
    ax1.legend(fontsize=8)
    for schedule, (hist, lrs, acc) in runs.items():
        ax2.plot(lrs, label=schedule)
        ax3.plot([h["epoch"] for h in hist], [h["valid_accuracy"] for h in hist], label=f"{schedule} ({acc:.3f})")
    ax2.set(xlabel="step", ylabel="learning rate", title="The two schedules")
    ax2.legend(fontsize=8)
    ax3.set(xlabel="epoch", ylabel="test accuracy", title="One-cycle against constant")
    ax3.legend(fontsize=8)
    save(fig, out_dir, "optimisers.png")
    return {"optimizers": {r["optimizer"]: r["test accuracy"] for r in rows},
            "final_loss": {r["optimizer"]: r["final training loss"] for r in rows},
            "suggestion": found.suggestion, "constant": runs["constant"][2], "one_cycle": runs["one_cycle"][2]}
