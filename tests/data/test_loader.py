"""The tensor-resident loader against per-sample references."""

import pytest
import torch
import torch.nn.functional as F

from focalcal.data.dataset import Dataset
from focalcal.data.loader import BatchLoader, random_crop_flip


def images(n=23, channels=3, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
    return Dataset(x, torch.arange(n), tuple(map(str, range(n))), (0.5,) * channels,
                   (0.25,) * channels)  # fmt: skip


def crop_flip_reference(image, padding, row, column, flip):
    _, height, width = image.shape
    out = F.pad(image, (padding,) * 4)[:, row : row + height, column : column + width]
    return out.flip(-1) if flip else out


def test_random_crop_flip_equals_pad_slice_mirror_per_image():
    x = images().inputs
    generator = torch.Generator().manual_seed(1)
    shifts = torch.randint(0, 9, (len(x), 2), generator=generator)
    flips = torch.rand(len(x), generator=generator) < 0.5
    out = random_crop_flip(x, 4, shifts, flips)
    for i in range(len(x)):
        expected = crop_flip_reference(
            x[i], 4, int(shifts[i, 0]), int(shifts[i, 1]), bool(flips[i])
        )
        assert torch.equal(out[i], expected)


def test_unshuffled_batches_are_the_dataset_in_order_and_normalised():
    data = images()
    batches = list(BatchLoader(data, batch_size=5))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]), data.labels)
    torch.testing.assert_close(x, (data.inputs.float() / 255 - 0.5) / 0.25)


def test_float_signals_and_token_ids():
    signals = Dataset(
        torch.randn(6, 1, 40), torch.zeros(6, dtype=torch.long), ("a",), (1.0,), (2.0,)
    )
    x, _ = next(iter(BatchLoader(signals, batch_size=6)))
    torch.testing.assert_close(x, (signals.inputs - 1) / 2)
    tokens = Dataset(torch.randint(0, 50, (6, 7)), torch.zeros(6, dtype=torch.long), ("a",))
    x, _ = next(iter(BatchLoader(tokens, batch_size=6)))
    assert torch.equal(x, tokens.inputs)


def test_shuffling_is_a_seeded_permutation_per_epoch():
    data = images()
    loader = BatchLoader(data, batch_size=4, shuffle=True, seed=3)

    def order():
        return torch.cat([y for _, y in loader])

    first = order()
    assert sorted(first.tolist()) == list(range(len(data)))
    assert torch.equal(order(), first)  # same epoch, same order
    loader.set_epoch(1)
    assert not torch.equal(order(), first)
    again = BatchLoader(data, batch_size=4, shuffle=True, seed=3)
    again.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in again]), order())
    other = BatchLoader(data, batch_size=4, shuffle=True, seed=4)
    assert not torch.equal(torch.cat([y for _, y in other]), first)


def test_augmented_batches_are_crops_and_flips_of_their_images():
    data = images(n=12, size=6)
    loader = BatchLoader(data, batch_size=5, shuffle=True, augment=True, padding=2, seed=0)
    seen_flip = seen_shift = False
    for x, y in loader:
        raw = ((x * 0.25 + 0.5) * 255).round().to(torch.uint8)
        for image, label in zip(raw, y, strict=True):
            source = data.inputs[label]
            candidates = {
                (r, c, f): crop_flip_reference(source, 2, r, c, f)
                for r in range(5) for c in range(5) for f in (False, True)
            }  # fmt: skip
            match = [key for key, value in candidates.items() if torch.equal(value, image)]
            assert match, "an augmented image is not a crop/flip of its source"
            seen_flip |= any(f for _, _, f in match)
            seen_shift |= any((r, c) != (2, 2) for r, c, _ in match)
    assert seen_flip and seen_shift


def test_drop_last_and_length():
    data = images()
    assert len(BatchLoader(data, batch_size=5)) == 5
    loader = BatchLoader(data, batch_size=5, drop_last=True, shuffle=True)
    assert len(loader) == 4 == len(list(loader))


@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_split_the_data(shuffle):
    data = images(n=23)
    shards = [
        torch.cat([y for _, y in BatchLoader(data, 4, shuffle=shuffle, rank=r, world_size=3)])
        for r in range(3)
    ]
    for r in range(3):
        loader = BatchLoader(data, 4, shuffle=shuffle, rank=r, world_size=3)
        assert len(loader) == len(list(loader))
    union = torch.cat(shards)
    assert set(union.tolist()) == set(range(23))
    if shuffle:  # equal steps on every rank: the order is padded by repeating its start
        assert [len(s) for s in shards] == [8, 8, 8]
    else:  # evaluation never repeats a sample
        assert sorted(union.tolist()) == list(range(23))


def test_bad_arguments_are_named():
    data = images()
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(data, batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(data, batch_size=2, rank=2, world_size=2)
    signals = Dataset(torch.randn(4, 1, 40), torch.zeros(4, dtype=torch.long), ("a",))
    with pytest.raises(ValueError, match="augment needs images"):
        BatchLoader(signals, batch_size=2, augment=True)
    with pytest.raises(ValueError, match="the dataset is empty"):
        BatchLoader(data.select(torch.arange(0)), batch_size=2)
