"""Map metrics on synthetic maps: statistics, localisation, deletion/insertion, Spearman, SSIM."""

from __future__ import annotations

import math

import pytest
import torch

from diffxai.core.imageops import blur, ssim
from diffxai.metrics.faithfulness import curve_counts, deletion_insertion, normalised_auc
from diffxai.metrics.maps import map_statistics, normalise_abs, random_maps, spearman

torch.set_num_threads(1)


def test_statistics_of_known_maps():
    h = w = 10
    uniform = torch.ones(1, h, w)
    onehot = torch.zeros(1, h, w)
    onehot[0, 2, 7] = 3.0
    mixed = torch.zeros(1, h, w)
    mixed[0, 0, 0], mixed[0, 9, 9] = 3.0, -1.0
    st = map_statistics(torch.cat([uniform, onehot, mixed]))
    assert st["total_abs"].tolist() == pytest.approx([100.0, 3.0, 4.0])
    assert st["entropy"][0] == pytest.approx(1.0) and st["entropy"][1] == pytest.approx(0.0)
    assert st["gini"][0] == pytest.approx(0.0, abs=1e-12) and st["gini"][1] == pytest.approx(0.99)
    assert st["top10_mass"][0] == pytest.approx(0.1) and st["top10_mass"][1] == pytest.approx(1.0)
    assert st["positive_fraction"].tolist() == pytest.approx([1.0, 1.0, 0.75])
    assert st["centroid_x"][0] == pytest.approx(0.5) and st["centroid_y"][0] == pytest.approx(0.5)
    assert st["centroid_x"][1] == pytest.approx(7 / 9) and st["centroid_y"][1] == pytest.approx(2 / 9)
    assert not st["nonfinite"].any()


def test_nan_and_zero_maps():
    maps = torch.rand(3, 6, 6)
    maps[1, 2, 2] = float("nan")
    maps[2] = 0.0
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[:, :3] = True
    st = map_statistics(maps, masks)
    assert st["nonfinite"].tolist() == [False, True, False]
    for key in ("entropy", "gini", "top10_mass", "mask_share", "pointing_hit", "positive_fraction"):
        assert math.isnan(st[key][1]), key
    assert st["total_abs"][2] == 0 and math.isnan(st["entropy"][2])  # no mass: ratios undefined
    assert st["mask_area"].tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_localisation_mask_share_and_pointing():
    maps = torch.zeros(2, 8, 8)
    maps[0, 1, 1], maps[0, 6, 6] = 3.0, 1.0  # 3/4 of the positive mass in the mask, max inside
    maps[1, 1, 1], maps[1, 6, 6] = 1.0, 5.0  # max outside
    maps[1, 0, 0] = -10.0  # negative mass is ignored by mask_share
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True
    st = map_statistics(maps, masks)
    assert st["mask_share"].tolist() == pytest.approx([0.75, 1 / 6])
    assert st["pointing_hit"].tolist() == [1.0, 0.0]
    assert st["mask_area"].tolist() == pytest.approx([0.25, 0.25])


def test_auc_and_curve_helpers():
    assert normalised_auc(torch.full((1, 5), 0.3)).item() == pytest.approx(0.3)
    assert normalised_auc(torch.linspace(0, 1, 11)[None]).item() == pytest.approx(0.5)
    assert curve_counts(64, 5).tolist() == [0, 16, 32, 48, 64]
    x = torch.full((2, 3, 9, 9), 0.7)
    assert torch.allclose(blur(x, 5.0, 11), x)  # a constant image stays constant


def _patch_world(n=24, size=12, seed=0):
    """Images with random content; the 'model' scores the mean of a 4x4 patch (in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g) * 0.2 - 1  # dark background
    images[:, :, 2:6, 5:9] = 1.0  # bright patch
    patch = torch.zeros(size, size, dtype=torch.bool)
    patch[2:6, 5:9] = True

    def score(x, src):
        return x[:, 0][:, patch].mean(1).clamp(0, 1)

    return images, patch, score, g


def test_perfect_map_beats_random_on_deletion_and_insertion():
    images, patch, score, g = _patch_world()
    n = images.shape[0]
    perfect = patch.float().expand(n, -1, -1) + 0.01 * torch.rand(n, *patch.shape, generator=g)
    rnd = random_maps(tuple(patch.shape), [torch.Generator().manual_seed(100 + i) for i in range(n)])
    ours = deletion_insertion(images, perfect, score, n_points=9, batch_size=50)
    base = deletion_insertion(images, rnd, score, n_points=9, batch_size=50)
    assert (ours["deletion_auc"] < base["deletion_auc"] - 0.2).all()
    assert (ours["insertion_auc"] > base["insertion_auc"] + 0.2).all()
    assert ours["deletion_curve"].shape == (n, 9)
    assert torch.allclose(ours["deletion_curve"][:, 0], torch.ones(n))  # nothing deleted yet
    # an inverted map is the worst: deletion keeps the score high
    worst = deletion_insertion(images, -perfect, score, n_points=9, batch_size=50)
    assert (worst["deletion_auc"] > base["deletion_auc"]).all()


def test_random_map_scores_near_random_baseline_and_batching_is_invisible():
    images, patch, score, _ = _patch_world(n=64, seed=1)
    n = images.shape[0]
    a = random_maps(tuple(patch.shape), [torch.Generator().manual_seed(i) for i in range(n)])
    b = random_maps(tuple(patch.shape), [torch.Generator().manual_seed(1000 + i) for i in range(n)])
    ra = deletion_insertion(images, a, score, n_points=13, batch_size=64)
    rb = deletion_insertion(images, b, score, n_points=13, batch_size=7)
    for metric in ("deletion_auc", "insertion_auc"):
        assert abs(ra[metric].mean() - rb[metric].mean()) < 0.03, metric
    ra7 = deletion_insertion(images, a, score, n_points=13, batch_size=7)
    torch.testing.assert_close(ra7["deletion_auc"], ra["deletion_auc"])


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 30), generator=g).double()  # many ties
    b = a + torch.randn(4, 30, generator=g)
    ours = spearman(a, b)
    for i in range(4):
        assert ours[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-10)
    assert spearman(a, a).tolist() == pytest.approx([1.0] * 4)
    assert math.isnan(spearman(torch.ones(1, 10), a[:1, :10])[0])


def test_ssim_identical_and_unrelated():
    g = torch.Generator().manual_seed(0)
    a = normalise_abs(torch.randn(3, 16, 16, generator=g))
    b = normalise_abs(torch.randn(3, 16, 16, generator=g))
    assert ssim(a, a, separable=False).tolist() == pytest.approx([1.0] * 3)
    assert (ssim(a, b, separable=False) < 0.3).all()
    small = normalise_abs(torch.randn(2, 6, 6, generator=g))  # the window shrinks to fit
    assert ssim(small, small, separable=False).tolist() == pytest.approx([1.0, 1.0])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        map_statistics(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError):
        deletion_insertion(torch.zeros(2, 1, 4, 4), torch.zeros(2, 5, 5), lambda x, s: x.mean((1, 2, 3)))
