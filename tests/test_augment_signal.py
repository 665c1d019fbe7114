"""SignalAugment and Augmented: shapes and labels kept, exact shift, ranges, training-only,
seeded by torch's RNG, and exact resume through a checkpoint."""

import pytest
import torch
from torch import nn

from deepfit import Callback, Learner
from deepfit.augment import Augmented, SignalAugment
from deepfit.errors import CallbackError, ConfigError


@pytest.mark.parametrize("shape", [(8, 40), (8, 3, 40), (1, 1, 5)])
def test_keeps_shape(shape):
    assert SignalAugment()(torch.randn(*shape)).shape == shape


def test_shift_is_exact_with_zero_padding():
    x = torch.arange(1.0, 11.0).repeat(200, 2, 1)  # (200, 2, 10): 1..10 in both channels
    torch.manual_seed(0)
    out = SignalAugment(max_shift=3, scale=(1.0, 1.0), noise=0.0)(x)
    seen = set()
    for row in out:
        assert torch.equal(row[0], row[1])  # channels of a sample share the shift
        # recover the shift: a right shift s > 0 starts with s zeros, a left one starts at value 1 - s
        s = int(row[0].nonzero()[0]) if row[0, 0] == 0 else 1 - int(row[0, 0])
        expected = torch.tensor([float(t - s + 1) if 0 <= t - s < 10 else 0.0 for t in range(10)])
        assert torch.equal(row[0], expected), (s, row[0])
        seen.add(s)
    assert seen == set(range(-3, 4))  # every shift in [-3, 3] occurs, and no other


def test_scale_and_noise_ranges():
    x = torch.ones(4000, 1, 50)
    torch.manual_seed(0)
    scaled = SignalAugment(max_shift=0, scale=(0.8, 1.2), noise=0.0)(x)
    amp = scaled[:, 0, 0]
    assert torch.equal(scaled, amp.view(-1, 1, 1).expand_as(x))  # one factor per sample
    assert 0.8 <= amp.min() < 0.81 and 1.19 < amp.max() <= 1.2
    noisy = SignalAugment(max_shift=0, scale=(1.0, 1.0), noise=0.05)(x) - x
    assert abs(noisy.std().item() - 0.05) < 0.001 and abs(noisy.mean().item()) < 0.001


def test_seeded_by_torch_rng_and_generator():
    x = torch.randn(16, 40)
    aug = SignalAugment()
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    assert torch.equal(a, aug(x))
    assert not torch.equal(a, aug(x))  # the RNG moved on
    g = SignalAugment(generator=torch.Generator().manual_seed(5))
    h = SignalAugment(generator=torch.Generator().manual_seed(5))
    assert torch.equal(g(x), h(x))


def test_augmented_is_training_only_and_keeps_keys():
    inner = nn.Sequential(nn.Linear(40, 4))
    model = Augmented(inner, SignalAugment())
    x = torch.randn(8, 40)
    model.eval()
    assert torch.equal(model(x), inner(x))  # no-op in eval mode
    model.train()
    assert not torch.equal(model(x), inner(x))
    assert list(model.state_dict()) == [f"model.{k}" for k in inner.state_dict()]
    with pytest.raises(ConfigError, match="no parameters or buffers"):
        Augmented(inner, nn.BatchNorm1d(4))


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="max_shift"):
        SignalAugment(max_shift=-1)
    with pytest.raises(ConfigError, match="scale"):
        SignalAugment(scale=(1.2, 0.8))
    with pytest.raises(ConfigError, match=r"\(B, L\) or \(B, C, L\)"):
        SignalAugment()(torch.randn(40))


class Crash(Callback):
    def on_batch_end(self, learner):
        if learner.step == 7:
            raise RuntimeError("simulated crash")


def _learner(out, callbacks=()):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 20, generator=g)
    y = (x[:, :10].sum(1) > 0).long()
    torch.manual_seed(0)
    model = Augmented(nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 2)), SignalAugment())
    return Learner(model, (x, y), lr=1e-2, batch_size=32, seed=3, out_dir=out, checkpoint_every=3,
                   progress=False, callbacks=list(callbacks))


def test_resume_with_augmentation_is_bit_exact(tmp_path):
    full = _learner(tmp_path / "full")
    full.fit_one_cycle(3, 1e-2)
    crashed = _learner(tmp_path / "run", callbacks=[Crash()])
    with pytest.raises(CallbackError, match="simulated crash"):
        crashed.fit_one_cycle(3, 1e-2)
    resumed = _learner(tmp_path / "run")
    resumed.fit_one_cycle(3, 1e-2, resume=tmp_path / "run" / "last.ckpt")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
