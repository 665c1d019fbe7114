"""Chapter 5 — Convolutional networks: MNIST-1D with an MLP, a small 1-D CNN and deepfit's 1-D
ResNet, with and without augmentation; then the 8x8 digit images with a 2-D CNN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import numpy as np
    import torch
    from torch import nn

    from deepfit import Learner, datasets
    from deepfit.augment import Augmented, SignalAugment
    from deepfit.learn._common import accuracy, mnist1d, pyplot, save, seed_all, table
    from deepfit.models.conv1d import ResNet1d
    from deepfit.models.mlp import MLP
    from deepfit.models.resnet import SmallCNN

    out_dir = Path(out_dir)
    d = mnist1d()
    n = 2000 if quick else len(d.x_train)
    train, test = (d.x_train[:n], d.y_train[:n]), (d.x_test, d.y_test)
    mean, std = float(d.x_train[:n].mean()), float(d.x_train[:n].std())
    epochs = 3 if quick else 15

    class Scale(nn.Module):
        """``(x - mean) / std`` with the training statistics, so raw signals go in."""

        def __init__(self, mean: float, std: float) -> None:
            super().__init__()
            self.mean, self.std = mean, std

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) / self.std

    def small_cnn() -> nn.Module:  # three convolutions that slide along the signal, then average over time
        return nn.Sequential(
            nn.Unflatten(1, (1, 40)),  # (B, 40) -> (B, 1, 40)
            nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),  # (B, 32, 20)
            nn.Conv1d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),  # (B, 64, 10)
            nn.Conv1d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 10),  # (B, 10)
        )

    narrow = {"widths": (16, 16, 32)} if quick else {}  # the quick version: a narrow ResNet, seconds not minutes
    builders = {
        "MLP 256 x 256": lambda: MLP(40, 10, hidden=(256, 256), mean=torch.full((40,), mean),
                                     std=torch.full((40,), std)),
        "small 1-D CNN": lambda: nn.Sequential(Scale(mean, std), small_cnn()),
        "1-D ResNet (deepfit)": lambda: ResNet1d(1, 10, mean=mean, std=std, **narrow),
        "1-D ResNet + augmentation": lambda: Augmented(ResNet1d(1, 10, mean=mean, std=std, **narrow), SignalAugment()),
    }
    rows = []
    for name, build in builders.items():
        seed_all(0)
        net = build()
        Learner(net, train, test, lr=3e-3, weight_decay=0.05, batch_size=128, progress=False,
                compile=False).fit_one_cycle(epochs)
        rows.append({"model": name, "parameters": sum(p.numel() for p in net.parameters()),
                     "test accuracy": accuracy(net, *test)})
    print(f"MNIST-1D, {n} training signals, {epochs} epochs each (one-cycle, peak lr 3e-3):")
    table(rows)

    # The same idea in 2-D: digits as 1 x 8 x 8 images.
    g = datasets.load("digits")
    img_tr, img_te = g.x_train.reshape(-1, 1, 8, 8) / 16, g.x_test.reshape(-1, 1, 8, 8) / 16
    image_rows = []
    for name, build in (("MLP 256 x 256", lambda: MLP(64, 10, hidden=(256, 256))),
                        ("2-D CNN (SmallCNN 16, 32)", lambda: SmallCNN(10, widths=(16, 32), in_channels=1))):
        seed_all(0)
        net = build()
        Learner(net, (img_tr, g.y_train), (img_te, g.y_test), lr=3e-3, batch_size=64, progress=False,
                compile=False).fit_one_cycle(3 if quick else 20)
        image_rows.append({"model": name, "parameters": sum(p.numel() for p in net.parameters()),
                           "test accuracy": accuracy(net, img_te, g.y_test)})
    print("\ndigits as 8x8 images:")
    table(image_rows)

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
    for label, colour in zip((0, 3, 7), ("tab:blue", "tab:orange", "tab:green")):
        for k, i in enumerate(np.flatnonzero(d.y_train == label)[:3]):
            ax1.plot(d.x_train[i], color=colour, alpha=0.8, label=f"digit {label}" if k == 0 else None)
    ax1.set(xlabel="position", ylabel="value", title="MNIST-1D: three signals each of digits 0, 3 and 7")
    ax1.legend(fontsize=8)
    names = [r["model"].replace(" + ", "\n+ ").replace(" (deepfit)", "\n(deepfit)") for r in rows]
    bars = ax2.bar(names, [r["test accuracy"] for r in rows], color=["grey", "tab:olive", "tab:blue", "tab:green"])
    ax2.bar_label(bars, fmt="%.3f", fontsize=8)
    ax2.set(ylabel="test accuracy", title="MNIST-1D: what convolution and augmentation buy", ylim=(0, 1.05))
    ax2.tick_params(axis="x", labelsize=8)
    save(fig, out_dir, "convolution.png")
    return {"mnist1d": {r["model"]: r["test accuracy"] for r in rows},
            "digits": {r["model"]: r["test accuracy"] for r in image_rows}}

