"""Image counts of every arm, budgets, and the checks on --mix and the scarce fractions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ccaug.detect import mixing


@pytest.mark.parametrize(
    ("n_real", "mix", "expected"),
    [(50, 0.5, 50), (50, 0.0, 0), (50, 0.25, 17), (100, 0.75, 300), (240, 0.2, 60), (7, 0.5, 7)],
)
def test_extra_images_make_up_the_share_mix(n_real, mix, expected):
    extra = mixing.extra_count(n_real, mix)
    assert extra == expected
    assert abs(extra / (n_real + extra) - mix) <= 0.5 / (n_real + extra) + 1e-12


@pytest.mark.parametrize("mix", [-0.1, 1.0, 1.5])
def test_mix_outside_zero_to_one_is_refused(mix):
    with pytest.raises(ValueError, match=r"--mix must be in \[0, 1\)"):
        mixing.extra_count(50, mix)


@pytest.mark.parametrize(
    ("available", "fraction", "n", "expected"),
    [(240, None, None, 240), (240, 0.25, None, 60), (240, None, 50, 50), (240, 0.001, None, 1), (10, 1.0, None, 10)],
)
def test_scarce_real_count(available, fraction, n, expected):
    assert mixing.scarce_real_count(available, fraction=fraction, n=n) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fraction=0.5, n=10), "not both"),
        (dict(fraction=0.0), "real-fraction"),
        (dict(fraction=1.5), "real-fraction"),
        (dict(n=0), "real-n"),
        (dict(n=241), "real-n"),
    ],
)
def test_bad_scarce_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixing.scarce_real_count(240, **kwargs)


def test_an_empty_real_split_is_refused():
    with pytest.raises(ValueError, match="empty"):
        mixing.scarce_real_count(0)


def test_draw_is_seeded_distinct_and_independent_of_list_order():
    items = [f"img{i}" for i in range(100)]
    first = mixing.draw(items, 30, np.random.default_rng(3))
    assert len(set(first)) == 30 and set(first) <= set(items)
    assert mixing.draw(items, 30, np.random.default_rng(3)) == first
    assert mixing.draw(items, 30, np.random.default_rng(4)) != first
    with pytest.raises(ValueError, match="only 100"):
        mixing.draw(items, 101, np.random.default_rng(0))


@pytest.mark.parametrize(("n", "size"), [(50, 240), (50, 50), (7, 100), (100, 100)])
def test_fill_epoch_repeats_images_evenly_to_the_exact_size(n, size):
    images = [f"img{i}" for i in range(n)]
    filled = mixing.fill_epoch(images, size, np.random.default_rng(0))
    assert len(filled) == size
    counts = Counter(filled)
    assert set(counts) == set(images)
    assert set(counts.values()) <= {size // n, size // n + 1}


def test_fill_epoch_refuses_an_epoch_smaller_than_the_arm():
    with pytest.raises(ValueError, match="smaller"):
        mixing.fill_epoch(["a", "b", "c"], 2, np.random.default_rng(0))


@pytest.mark.parametrize("mix", [0.2, 0.5, 0.8])
def test_every_arm_gets_the_same_budget(mix):
    real = tuple(f"real{i}" for i in range(50))
    extra = tuple(f"syn{i}" for i in range(mixing.extra_count(50, mix)))
    arms = [mixing.ArmImages("real-only", real), mixing.ArmImages("synthetic", real, extra)]
    size = mixing.epoch_size(arms)
    assert size == 50 + len(extra)
    lists = [mixing.fill_epoch(arm.real + arm.extra, size, np.random.default_rng(1)) for arm in arms]
    assert [len(images) for images in lists] == [size, size]
    assert abs(arms[1].mix - mix) < 0.01
    synthetic_share = sum(image.startswith("syn") for image in lists[1]) / size
    assert synthetic_share == pytest.approx(len(extra) / size)
