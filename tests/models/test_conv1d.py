"""ResNet1d: shapes, parameter count, equality with the textbook Conv1d path, a small fit learns,
and `deepfit train mnist1d` from the command line."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepfit import Learner, datasets
from deepfit.augment import Augmented, SignalAugment
from deepfit.errors import ConfigError
from deepfit.models.conv1d import ResNet1d

ROOT = Path(__file__).resolve().parents[2]


def reference_forward(model: ResNet1d, x: torch.Tensor) -> torch.Tensor:
    """The same network written the textbook way, on (B, C, L) through the nn.Conv1d modules."""
    x = x.unsqueeze(1) if x.dim() == 2 else x
    x = model.stem((x - model.mean) / model.std)
    for block in model.blocks:
        out = F.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        x = F.relu(out + block.shortcut(x))
    return model.head(x.mean(-1))


@pytest.mark.parametrize("shape", [(4, 40), (4, 1, 40), (3, 2, 17), (2, 3, 1)])
def test_shapes(shape):
    model = ResNet1d(1 if len(shape) == 2 else shape[1], 7)
    assert model(torch.randn(*shape)).shape == (shape[0], 7)


def test_parameter_count_and_zero_init_block_gains():
    model = ResNet1d(1, 10)
    n = sum(p.numel() for p in model.parameters())
    assert 130_000 <= n <= 145_000, n  # ~138k, as the benchmark recipe
    assert n == 138_314
    assert all(torch.count_nonzero(block.bn2.weight) == 0 for block in model.blocks)
    # fresh blocks are identity-like: the output ignores the blocks' second conv
    assert [type(m).__name__ for m in model.blocks[1].shortcut] == ["Conv1d", "BatchNorm1d"]


@pytest.mark.parametrize("channels,length", [(1, 40), (3, 41)])
def test_matmul_path_equals_textbook_conv1d(channels, length):
    torch.manual_seed(0)
    model = ResNet1d(channels, 5, mean=torch.rand(channels), std=torch.rand(channels) + 0.5)
    for block in model.blocks:
        nn.init.normal_(block.bn2.weight)  # non-zero, so the blocks' convs matter
    ref = copy.deepcopy(model)
    x = torch.randn(8, channels, length)
    out, expected = model(x), reference_forward(ref, x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=name)
    for a, b in zip(model.buffers(), ref.buffers()):  # BatchNorm running statistics too
        torch.testing.assert_close(a, b)
    model.eval(), ref.eval()
    torch.testing.assert_close(model(x), reference_forward(ref, x), rtol=1e-5, atol=1e-5)


def test_normalisation_buffers_take_raw_signals():
    x = 5.0 + 3.0 * torch.randn(16, 2, 30)
    model = ResNet1d(2, 3, mean=x.mean((0, 2)), std=x.std((0, 2))).eval()
    shifted = ResNet1d(2, 3).eval()
    shifted.load_state_dict({**model.state_dict(), "mean": torch.zeros(2, 1), "std": torch.ones(2, 1)})
    z = (x - x.mean((0, 2), keepdim=True)) / x.std((0, 2), keepdim=True)
    torch.testing.assert_close(model(x), shifted(z), rtol=1e-5, atol=1e-5)
    assert set(model.state_dict()) >= {"mean", "std"}


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="one stride per stage"):
        ResNet1d(1, 10, widths=(8, 8), strides=(1,))
    with pytest.raises(ConfigError, match=r"expects \(B, 2, L\)"):
        ResNet1d(2, 10)(torch.randn(4, 40))


@pytest.fixture(scope="module")
def mnist1d():
    return datasets.load("mnist1d")  # generated on the fly: ~5 s


def test_small_fit_on_mnist1d_learns(mnist1d):
    d = mnist1d
    x, y = torch.from_numpy(d.x_train[:1000]), torch.from_numpy(d.y_train[:1000])
    xt, yt = torch.from_numpy(d.x_test), torch.from_numpy(d.y_test)
    torch.manual_seed(0)
    model = Augmented(ResNet1d(1, 10, mean=x.mean(), std=x.std()), SignalAugment())
    learn = Learner(model, (x, y), metrics=["accuracy"], batch_size=32, weight_decay=0.05, label_smoothing=0.1,
                    seed=0, progress=False)
    learn.fit_one_cycle(3, 1e-2)  # 96 steps, ~3 s
    acc = learn.validate((xt, yt))["accuracy"]
    assert acc > 0.5, acc  # chance is 0.10; 0.74 seen


def test_cli_train_mnist1d(tmp_path):
    out = tmp_path / "m1d"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "deepfit", "train", "mnist1d", "--epochs", "2", "--out", str(out),
                           "--quiet"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.3, metrics
    settings = json.loads((out / "run.json").read_text())["settings"]  # run.json v2: settings under their key, by group
    assert settings["model"]["model"] == "resnet1d" and settings["schedule"]["epochs"] == 2
    assert settings["augment"]["augment"] is True
    # model.safetensors holds the bare network (no training-only wrapper): it loads into ResNet1d
    from safetensors.torch import load_file

    model = ResNet1d(1, 10)
    model.load_state_dict(load_file(out / "model.safetensors"))
