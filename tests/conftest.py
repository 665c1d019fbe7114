"""Test set-up: one torch thread per process (two cores; oversubscription stalls torch)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def blobs():
    """A small, learnable 3-class problem: (x_train, y_train, x_valid, y_valid)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    y = torch.randint(0, 3, (600,), generator=g)
    x = centers[y] + 0.8 * torch.randn(600, 2, generator=g)
    x = torch.cat([x, torch.randn(600, 6, generator=g)], dim=1)  # 6 noise features
    return x[:480], y[:480], x[480:], y[480:]


# The `deepfit serve` tests' session fixtures: tiny runs and shared server processes.
from serve_support import auth, image_server, serve_runs, table_server  # noqa: E402, F401
