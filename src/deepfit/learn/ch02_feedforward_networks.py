"""Chapter 2 — Deep feedforward networks: why a hidden layer (XOR), how gradients are checked
(``torch.autograd.gradcheck``), and a multilayer perceptron on real handwritten digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def _xor(n: int, seed: int) -> tuple[Any, Any]:
    """``n`` points scattered around the four corners of the unit square; label = x1 XOR x2."""
    import torch

    g = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, 2, (n, 2), generator=g)
    x = corners.float() + 0.15 * torch.randn(n, 2, generator=g)
    return x, (corners[:, 0] ^ corners[:, 1]).long()


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import torch
    from torch import nn

    from deepfit import Learner, datasets
    from deepfit.learn._common import accuracy, pyplot, save, seed_all, table
    from deepfit.models.mlp import MLP

    out_dir = Path(out_dir)
    # 1. XOR: no straight line separates it; one hidden layer of 8 units does.
    x, y = _xor(400, seed=0)
    x_test, y_test = _xor(400, seed=1)
    seed_all(0)
    models = {"linear": nn.Linear(2, 2), "2-layer MLP": nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))}
    xor_acc = {}
    for name, net in models.items():
        Learner(net, (x, y), lr=0.05, batch_size=32, progress=False).fit(40)
        xor_acc[name] = accuracy(net, x_test, y_test)
        print(f"XOR, {name}: test accuracy {xor_acc[name]:.3f}")

    # 2. Gradients: gradcheck compares autograd's gradient with finite differences (in float64).
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    inputs = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ok = torch.autograd.gradcheck(lambda a, b: torch.tanh(a @ b).sum(), (inputs, w))
    print(f"gradcheck of tanh(x @ w).sum(): {ok}")

    class WrongSquare(torch.autograd.Function):  # forward x**2, backward deliberately wrong (x, not 2x)
        @staticmethod
        def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(t)
            return t * t

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (t,) = ctx.saved_tensors
            return grad * t

    caught = not torch.autograd.gradcheck(WrongSquare.apply, (torch.randn(4, dtype=torch.float64, requires_grad=True),),
                                          raise_exception=False)
    print(f"gradcheck catches a backward that forgot the factor 2: {caught}")

    # 3. Digits: 8x8 images as 64 numbers; a linear model, then one and two hidden layers.
    d = datasets.load("digits")
    mean, std = torch.tensor(d.x_train.mean(0)), torch.tensor(d.x_train.std(0))
    rows, curves = [], {}
    for hidden in ((), (64,), (256, 256)):
        seed_all(0)
        net = MLP(64, 10, hidden=hidden, mean=mean, std=std)
        hist = Learner(net, (d.x_train, d.y_train), (d.x_test, d.y_test), metrics=["accuracy"], lr=1e-3,
                       progress=False).fit(5 if quick else 30)
        name = "linear (no hidden layer)" if not hidden else "MLP " + " x ".join(map(str, hidden))
        curves[name] = [h["valid_accuracy"] for h in hist]
        rows.append({"model": name, "parameters": sum(p.numel() for p in net.parameters()),
                     "test accuracy": accuracy(net, d.x_test, d.y_test)})
    print()
    table(rows)

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.6, 1.6, 200), torch.linspace(-0.6, 1.6, 200), indexing="xy"), -1)
    for ax, (name, net) in zip(axes[:2], models.items()):
        with torch.inference_mode():
            p = net.eval()(grid.reshape(-1, 2)).softmax(1)[:, 1].reshape(200, 200)
        ax.contourf(grid[..., 0], grid[..., 1], p, levels=20, cmap="RdBu_r", alpha=0.6, vmin=0, vmax=1)
        ax.scatter(x_test[:, 0], x_test[:, 1], c=y_test, cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.2)
        ax.set(title=f"XOR, {name}: accuracy {xor_acc[name]:.2f}", xlabel="x1", ylabel="x2")
        ax.grid(False)
    for name, acc in curves.items():
        axes[2].plot(range(1, len(acc) + 1), acc, label=name)
    axes[2].set(xlabel="epoch", ylabel="test accuracy", title="Digits: depth helps, a little")
    axes[2].set_ylim(0.8, 1.0)
    axes[2].legend(fontsize=8)
    save(fig, out_dir, "feedforward.png")
    return {"xor_linear": xor_acc["linear"], "xor_mlp": xor_acc["2-layer MLP"], "gradcheck": bool(ok),
            "gradcheck_catches_bug": bool(caught), "digits": {r["model"]: r["test accuracy"] for r in rows}}
