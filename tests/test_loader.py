import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfit.data.loader import DatasetBatches, TensorBatches, epoch_order


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200), st.integers(1, 64), st.booleans(), st.integers(0, 3))
def test_each_epoch_visits_every_sample_once(n, bs, shuffle, epoch):
    x = torch.arange(n)
    loader = TensorBatches([x], batch_size=bs, shuffle=shuffle, seed=1)
    seen = torch.cat([b[0] for b in loader.iterate(epoch)])
    assert sorted(seen.tolist()) == list(range(n))
    assert loader.num_batches() == -(-n // bs)


def test_order_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not torch.equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))
    assert not torch.equal(epoch_order(50, 1, 2), epoch_order(50, 2, 2))


def test_resume_position_yields_the_remaining_batches():
    x = torch.arange(100)
    loader = TensorBatches([x], batch_size=16, shuffle=True, seed=4)
    full = [b[0] for b in loader.iterate(3)]
    rest = [b[0] for b in loader.iterate(3, start=4)]
    assert len(rest) == len(full) - 4 and all(torch.equal(a, b) for a, b in zip(full[4:], rest))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 150), st.integers(1, 16), st.integers(2, 3))
def test_shards_partition_the_global_batches(n, bs, world):
    x = torch.arange(n)
    single = TensorBatches([x], batch_size=bs * world, shuffle=True, seed=0)
    ranks = [TensorBatches([x], batch_size=bs, shuffle=True, seed=0, rank=r, world_size=world) for r in range(world)]
    assert all(r.num_batches() == single.num_batches() for r in ranks)
    for global_batch, *parts in zip(single.iterate(1), *(r.iterate(1) for r in ranks)):
        parts = [p[0] for p in parts]
        assert all(len(p) >= 1 for p in parts)  # no rank is ever idle
        assert set(torch.cat(parts).tolist()) == set(global_batch[0].tolist())
        if len(global_batch[0]) == bs * world:
            assert torch.equal(torch.cat(parts), global_batch[0])


def test_dataset_loader_follows_the_same_order():
    x = torch.arange(70).float()
    ds = torch.utils.data.TensorDataset(x, x)
    a = [b[0] for b in TensorBatches([x], batch_size=8, shuffle=True, seed=2).iterate(1, start=2)]
    b = [b[0] for b in DatasetBatches(ds, batch_size=8, shuffle=True, seed=2).iterate(1, start=2)]
    assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))
