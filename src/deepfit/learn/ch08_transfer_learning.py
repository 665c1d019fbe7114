"""Chapter 8 — Transfer learning, the from-scratch half: an image classifier trained from random
weights on 5,000 CIFAR-10 photos. Fine-tuning a pretrained network waits for issue 15."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["run", "CIFAR10_SMALL"]

# The CIFAR-10 subset (500 train / 100 test images per class, JPEG class folders); override with
# DEEPFIT_CIFAR10_SMALL. Without it the chapter trains on the bundled digits written as PNGs.
CIFAR10_SMALL = Path(os.environ.get("DEEPFIT_CIFAR10_SMALL", "/work/shared/data/cifar10-small"))


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import shutil

    from PIL import Image

    from deepfit.datasets import digits_images
    from deepfit.learn._common import pyplot, save, table
    from deepfit.tasks.images import ImageSettings, fit_images

    out_dir = Path(out_dir)
    cifar = (CIFAR10_SMALL / "train").is_dir() and (CIFAR10_SMALL / "test").is_dir()
    if cifar and not quick:
        train, test, name = CIFAR10_SMALL / "train", CIFAR10_SMALL / "test", "CIFAR-10 (5,000 train / 1,000 test)"
    else:
        if not quick:
            print(f"{CIFAR10_SMALL} is not here: training on the bundled digits instead")
        train, test, name = digits_images(out_dir / "runs" / "digits_png"), None, "digits as 32x32 PNGs"
    settings = ImageSettings(epochs=2, seed=0, num_workers=0) if quick else ImageSettings(time_limit=50, seed=0)
    print(f"{name}: training from random weights ({'2 epochs' if quick else 'a 50 s budget'})")
    shutil.rmtree(out_dir / "runs" / "images", ignore_errors=True)  # a run directory is created afresh
    model = fit_images(train, settings, test=test, out=out_dir / "runs" / "images", progress=False)
    acc = float(model.metrics["test_accuracy"])
    chance = 1 / len(model.classes)
    print(f"test accuracy {acc:.3f} (chance {chance:.3f}); {len(model.classes)} classes: {', '.join(model.classes)}")
    print("fine-tuning a pretrained network: not yet — it arrives with issue 15 (pretrained image networks)")

    rows = []
    if test is not None:
        frame = model.predict_frame(test)
        frame["true"] = frame["path"].map(lambda p: Path(p).parent.name)
        per_class = (frame["prediction"].astype(str) == frame["true"]).groupby(frame["true"]).mean()
        rows = [{"class": c, "test accuracy": float(a)} for c, a in per_class.sort_values().items()]
        print()
        table(rows)
        plt = pyplot()
        fig = plt.figure(figsize=(12, 4.2))
        grid = fig.add_gridspec(3, 10, width_ratios=[1] * 6 + [0.3] + [1] * 3)
        for k, row in enumerate(frame.sample(18, random_state=0).itertuples()):
            ax = fig.add_subplot(grid[k // 6, k % 6])
            ax.imshow(Image.open(row.path))
            ax.set_title(f"{row.prediction}", fontsize=7, color="tab:green" if row.prediction == row.true else "tab:red")
            ax.axis("off")
        ax = fig.add_subplot(grid[:, 7:])
        ax.barh([r["class"] for r in rows], [r["test accuracy"] for r in rows], color="tab:blue")
        ax.axvline(chance, color="grey", linestyle=":", label="chance")
        ax.set(xlabel="test accuracy", title=f"From scratch: {acc:.3f} overall", xlim=(0, 1))
        ax.legend(fontsize=8)
        fig.suptitle("Test photos with the predicted class (green: right, red: wrong)", fontsize=10, x=0.33)
        save(fig, out_dir, "from_scratch.png")
    return {"dataset": name, "test_accuracy": acc, "chance": chance,
            "per_class": {r["class"]: r["test accuracy"] for r in rows}}
