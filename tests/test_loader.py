import torch

from genlab.data.loader import BatchLoader


def _collect(loader, start=0):
    return [b[0].clone() for b in loader.iter_from(start)]


def test_each_epoch_is_a_permutation_and_depends_only_on_seed_and_epoch():
    data = torch.arange(103)
    loader = BatchLoader((data,), 10, shuffle=True, seed=3)
    assert len(loader) == 11
    loader.set_epoch(0)
    first = torch.cat(_collect(loader))
    assert sorted(first.tolist()) == list(range(103))
    loader.set_epoch(1)
    second = torch.cat(_collect(loader))
    assert not torch.equal(first, second)
    again = BatchLoader((data,), 10, shuffle=True, seed=3)
    again.set_epoch(1)
    assert torch.equal(torch.cat(_collect(again)), second)


def test_resuming_mid_epoch_gives_the_same_remaining_batches_and_transforms():
    data = torch.rand(50, 4)

    def binarize(batch, generator):
        return (torch.bernoulli(batch[0], generator=generator),)

    loader = BatchLoader((data,), 8, seed=1, transform=binarize)
    loader.set_epoch(2)
    full = _collect(loader)
    resumed = BatchLoader((data,), 8, seed=1, transform=binarize)
    resumed.set_epoch(2)
    tail = _collect(resumed, start=3)
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail))
    assert len(tail) == len(full) - 3


def test_ranks_get_disjoint_equal_shards():
    data = torch.arange(101)
    shards = []
    for rank in range(2):
        loader = BatchLoader((data,), 10, seed=0, rank=rank, world_size=2, drop_last=True)
        shards.append(torch.cat(_collect(loader)))
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
