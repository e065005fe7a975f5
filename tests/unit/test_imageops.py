"""The one Gaussian kernel / blur / SSIM of diffxai.core.imageops.

1. With each variant's options they equal, bit for bit, the three implementations they replaced
   (old ``evaluation.py`` → core/imageops.py, old ``saliency.py`` → core/ssim_saliency.py, old
   ``schedules.py`` → core/ssim_schedules.py), recorded in ``data/imageops_ref.pt`` by running
   those implementations on the seeded inputs built below (``CASES``).
2. Known answers: kernels sum to 1, the blur of a constant is constant, ssim(x, x) = 1, and SSIM
   falls as noise grows.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
import torch

from diffxai.core.imageops import (
    band_ssim,
    blur,
    gaussian_kernel1d,
    minmax,
    split_bands,
    ssim,
    upsample,
)

F32, F64 = torch.float32, torch.float64
REF = Path(__file__).parent / "data" / "imageops_ref.pt"

# each old variant, as options of the one ssim / blur
EVALUATION = {"separable": False}  # attribution sanity check: (B, H, W) maps, valid, float64
SALIENCY = {"padding": "zero", "separable": False, "clamp_variance": True, "dtype": F32}  # window 15, σ 1.5
SALIENCY_STRUCTURE = dict(SALIENCY, terms="structure", reduction="map")
SCHEDULES = {"terms": "cs*l", "out_dtype": F32}  # luminance=False: terms="cs"
OPTION_SETS = {
    "evaluation": EVALUATION,
    "saliency": dict(SALIENCY, window=15, data_range=2.0),
    "saliency_structure": dict(SALIENCY_STRUCTURE, window=15),
    "schedules": SCHEDULES,
    "schedules_cs": dict(SCHEDULES, terms="cs"),
}


# ---------------------------------------------------------------------------- seeded inputs


def rand(seed, shape, dtype=F64, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=F64)).to(dtype)


def pair(seed, shape, dtype=F64, lo=0.0, hi=1.0, kind="noisy"):
    """Two images in [lo, hi] (``noisy``: b = a + noise; ``const``: two equal constants;
    ``blocky``: piecewise constant, many zero-variance windows, b brighter in its top half)."""
    a = rand(seed, shape, F64, lo, hi)
    if kind == "noisy":
        b = a + 0.1 * (hi - lo) * (rand(seed + 1, shape) - 0.5)
    elif kind == "unrelated":
        b = rand(seed + 1, shape, F64, lo, hi)
    elif kind == "same":
        b = a.clone()
    elif kind == "const":
        a = torch.full(shape, 0.3, dtype=F64)
        b = torch.full(shape, 0.3, dtype=F64)
    elif kind == "blocky":
        a = (rand(seed, shape[:-2] + (shape[-2] // 4 + 1, shape[-1] // 4 + 1)) * 4).floor() / 4
        a = a.repeat_interleave(4, -2).repeat_interleave(4, -1)[..., : shape[-2], : shape[-1]].contiguous()
        b = a.clone()
        b[..., : shape[-2] // 2, :] += 0.1
    return a.to(dtype), b.to(dtype)


KINDS = ("noisy", "unrelated", "same", "const", "blocky")


def cases():
    """``(key, group, inputs, params)`` for every recorded output."""
    out = []

    def add(group, inputs, **params):
        out.append(("|".join([group, *(f"{k}={v}" for k, v in params.items())]), group, inputs, params))

    # old evaluation.py
    for k in (3, 4, 11, 15):
        for s in (0.7, 1.5, 5.0):
            for dt in (F32, F64):
                add("E.kernel", (), size=k, sigma=s, dtype=dt)
    for i, shape in enumerate([(2, 1, 8, 8), (1, 3, 8, 8), (2, 3, 4, 4), (1, 1, 16, 8), (1, 1, 5, 5)]):
        for k, s in ((11, 5.0), (5, 1.0), (4, 1.0)):
            for dt in (F32, F64):
                add("E.blur", (rand(100 + i, shape, dt),), shape=shape, size=k, sigma=s, dtype=dt)
    for i, shape in enumerate([(3, 8, 8), (3, 16, 16), (2, 64, 64), (2, 5, 6), (2, 16, 9)]):
        for win, sig, dr in ((11, 1.5, 1.0), (7, 1.0, 2.0)):
            for j, kind in enumerate(KINDS):
                for dt in (F64, F32):
                    ab = pair(200 + 10 * i + j, shape, dt, 0, dr, kind)
                    add("E.ssim", ab, shape=shape, window=win, sigma=sig, data_range=dr, kind=kind, dtype=dt)
    # old saliency.py
    for size in (7, 11, 15):
        for s in (0.7, 1.5, 3.0):
            add("S.window", (), size=size, sigma=s)
    for i, shape in enumerate([(2, 1, 8, 8), (1, 3, 12, 12), (2, 3, 5, 7)]):
        for size, s in ((15, 1.5), (7, 1.0)):
            add("S.filter", (rand(300 + i, shape, F32),), shape=shape, size=size, sigma=s)
    for i, shape in enumerate([(2, 1, 8, 8), (2, 3, 16, 16), (2, 3, 64, 64), (3, 1, 5, 7)]):
        for bcast in (False, True):
            for win, sig, dr in ((15, 1.5, 2.0), (15, 1.5, 1.0), (7, 0.8, 2.0)):
                for j, kind in enumerate(KINDS):
                    for dt in (F32, F64):
                        a, b = pair(400 + 10 * i + j, shape, dt, -dr / 2, dr / 2, kind)
                        p = {
                            "shape": shape,
                            "bcast": bcast,
                            "window": win,
                            "sigma": sig,
                            "data_range": dr,
                            "kind": kind,
                            "dtype": dt,
                        }
                        add("S.ssim", (a[:1] if bcast else a, b), **p)
                        if shape[-1] <= 16 and dt == F32 and kind in ("noisy", "const", "blocky") and sig != 0.8:
                            add("S.struct", (a[:1] if bcast else a, b), **p)
                        elif shape[-1] > 16 and bcast and kind == "noisy" and dr == 1.0 and dt == F32:
                            add("S.struct_mean", (a[:1], b), **p)  # 64 × 64: the map's mean
    for i, shape in enumerate([(2, 8, 8), (3, 8, 5)]):
        m = rand(500 + i, shape, F32) * 3 - 1
        m[0, :2] = 0.25
        add("S.minmax", (m,), shape=shape)
        add("S.minmax", (torch.full(shape, 2.0),), shape=shape, const=True)
        add("S.upsample", (m,), shape=shape, size=(shape[1] + 3, shape[2] * 2))
        add("S.upsample", (m.double(),), shape=shape, size=(17, 13))
        add("S.upsample", (m,), shape=shape, size=shape[1:])
    # old schedules.py
    for s in (0.5, 1.0, 1.5, 2.0, 3.3):
        for r in (None, 3, 5):
            add("T.kernel", (), sigma=s, radius=r)
    for i, shape in enumerate([(2, 1, 8, 8), (1, 3, 8, 8), (2, 3, 3, 4), (1, 1, 16, 16)]):
        for s in (1.0, 2.0):
            for pad in ("reflect", "valid"):
                if pad == "valid" and 2 * int(torch.tensor(3 * s).ceil()) + 1 > min(shape[-2:]):
                    continue  # the old valid blur needs the kernel to fit
                for dt in (F32, F64):
                    add("T.blur", (rand(600 + i, shape, dt),), shape=shape, sigma=s, padding=pad, dtype=dt)
    for i, shape in enumerate([(2, 1, 8, 8), (1, 3, 8, 8), (2, 3, 3, 4)]):
        for s in (0.5, 1.0, 2.0):
            for dt in (F32, F64):
                add("T.split", (rand(700 + i, shape, dt, -1, 1),), shape=shape, sigma=s, dtype=dt)
    for i, shape in enumerate([(2, 1, 8, 8), (2, 3, 16, 16), (2, 3, 64, 64), (2, 1, 5, 7)]):
        for win, sig, dr in ((11, 1.5, 1.0), (7, 1.0, 0.5)):
            for lum in (True, False):
                for j, kind in enumerate(KINDS):
                    for dt in (F32, F64):
                        ab = pair(800 + 10 * i + j, shape, dt, 0, dr, kind)
                        p = {
                            "shape": shape,
                            "window": win,
                            "sigma": sig,
                            "data_range": dr,
                            "luminance": lum,
                            "kind": kind,
                            "dtype": dt,
                        }
                        add("T.ssim", ab, **p)
    for i, shape in enumerate([(2, 1, 8, 8), (2, 3, 16, 16), (2, 3, 64, 64)]):
        for s in (0.5, 1.0, 2.0):
            for j, kind in enumerate(("noisy", "unrelated", "blocky")):
                for dt in (F32, F64):
                    add(
                        "T.band",
                        pair(900 + 10 * i + j, shape, dt, -1, 1, kind),
                        shape=shape,
                        sigma=s,
                        kind=kind,
                        dtype=dt,
                    )
    return out


def unified(group: str, inputs: tuple, p: dict):
    """The recorded output of ``group`` computed with the unified functions and that variant's options."""
    if group == "E.kernel":
        return gaussian_kernel1d(p["sigma"], p["size"], dtype=p["dtype"])
    if group == "E.blur":
        return blur(inputs[0], p["sigma"], p["size"], padding="reflect")
    if group == "E.ssim":
        return ssim(*inputs, window=p["window"], sigma=p["sigma"], data_range=p["data_range"], **EVALUATION)
    if group == "S.window":  # the 2-D window blur(separable=False) builds, as the old float32 one
        k = gaussian_kernel1d(p["sigma"], p["size"])
        return torch.outer(k, k).to(F32)
    if group == "S.filter":
        return blur(inputs[0], p["sigma"], p["size"], padding="zero", separable=False)
    win, sig, dr = p.get("window"), p.get("sigma"), p.get("data_range")
    if group == "S.ssim":
        return ssim(*inputs, window=win, sigma=sig, data_range=dr, **SALIENCY)
    if group == "S.struct":
        return ssim(*inputs, window=win, sigma=sig, data_range=dr, **SALIENCY_STRUCTURE)
    if group == "S.struct_mean":
        return ssim(*inputs, window=win, sigma=sig, data_range=dr, **SALIENCY_STRUCTURE).flatten(1).mean(1)
    if group == "S.minmax":
        return minmax(inputs[0])
    if group == "S.upsample":
        return upsample(inputs[0], p["size"])
    if group == "T.kernel":
        return gaussian_kernel1d(p["sigma"], radius=p["radius"])
    if group == "T.blur":
        return blur(inputs[0], p["sigma"], padding=p["padding"])
    if group == "T.split":
        return split_bands(inputs[0], p["sigma"])
    if group == "T.ssim":
        opts = SCHEDULES if p["luminance"] else dict(SCHEDULES, terms="cs")
        return ssim(*inputs, window=win, sigma=sig, data_range=dr, **opts)
    if group == "T.band":
        return band_ssim(*inputs, p["sigma"])
    raise KeyError(group)


def flatten(key: str, value) -> dict[str, torch.Tensor]:
    if isinstance(value, dict):
        return {f"{key}|{k}": v for k, v in value.items()}
    if isinstance(value, tuple):
        return {f"{key}|{i}": v for i, v in enumerate(value)}
    return {key: value}


def digest(key: str) -> str:
    """The fixture's name for an output (a short hash of its key)."""
    return hashlib.sha1(key.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------- 1. bit for bit


def unpack(packed: dict) -> dict[str, torch.Tensor]:
    """The fixture stores every output flattened into one float32 and one float64 buffer (one
    tensor per dtype keeps the file small), with each output's key digest, dtype and shape."""
    out, offset = {}, {"float32": 0, "float64": 0}
    for key, dt, shape in zip(packed["keys"], packed["dtypes"], packed["shapes"]):
        n = int(torch.Size(shape).numel())
        out[key] = packed[dt][offset[dt] : offset[dt] + n].view(shape)
        offset[dt] += n
    assert all(offset[dt] == packed[dt].numel() for dt in offset)
    return out


@pytest.fixture(scope="module")
def recorded() -> dict[str, torch.Tensor]:
    return unpack(torch.load(REF))


GROUPS = sorted({c[1] for c in cases()})


@pytest.mark.parametrize("group", GROUPS)
def test_unified_functions_equal_the_old_variants_bit_for_bit(recorded, group):
    mine = [c for c in cases() if c[1] == group]
    assert mine
    bad = []
    for key, g, inputs, params in mine:
        for k, v in flatten(key, unified(g, inputs, params)).items():
            ref = recorded[digest(k)]
            if v.dtype != ref.dtype or v.shape != ref.shape or not torch.equal(v, ref):
                bad.append(k)
    assert not bad, f"{len(bad)} outputs differ from the old variants, e.g. {bad[:5]}"


def test_every_recorded_output_is_checked(recorded):
    keys = {k for key, g, inputs, params in cases() for k in flatten(key, unified(g, inputs, params))}
    assert len(keys) == len(recorded) and {digest(k) for k in keys} == set(recorded)
    assert REF.stat().st_size < 200_000


# ---------------------------------------------------------------------------- 2. known answers


@pytest.mark.parametrize(
    "sigma,size,radius",
    [(1.5, 11, None), (5.0, 11, None), (1.0, 4, None), (0.7, None, None), (2.0, None, 3), (3.3, None, None)],
)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_kernel_is_normalised_and_symmetric(sigma, size, radius, dtype):
    k = gaussian_kernel1d(sigma, size, radius=radius, dtype=dtype)
    n = size if size is not None else 2 * (radius if radius is not None else int(-(-3 * sigma // 1))) + 1
    assert k.shape == (n,) and k.dtype == dtype
    assert float(k.double().sum()) == pytest.approx(1.0, abs=1e-6 if dtype == F32 else 1e-14)
    assert torch.equal(k, k.flip(0)) and (k > 0).all()
    assert int(k.argmax()) == (n - 1) // 2


def test_kernel_rejects_size_and_radius_together():
    with pytest.raises(ValueError):
        gaussian_kernel1d(1.0, 5, radius=2)
    with pytest.raises(ValueError):
        gaussian_kernel1d(0.0, 5)


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero", "valid"])
@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_blur_of_a_constant_is_constant(padding, separable, dtype):
    x = torch.full((2, 3, 16, 16), 0.7, dtype=dtype)
    y = blur(x, 1.5, 7, padding=padding, separable=separable)
    assert y.dtype == dtype
    assert y.shape == ((2, 3, 10, 10) if padding == "valid" else (2, 3, 16, 16))
    if padding == "zero":  # constant away from the border (≥ radius from it), darker at it
        assert torch.allclose(y[..., 3:-3, 3:-3], torch.full_like(y[..., 3:-3, 3:-3], 0.7))
        assert (y[..., 0, :] < 0.7).all()
    else:
        assert torch.allclose(y, torch.full_like(y, 0.7))


def test_blur_tiny_image_reflect_falls_back_to_replicate():
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(blur(x, 5.0, 11, padding="reflect"), blur(x, 5.0, 11, padding="replicate"))
    assert torch.allclose(blur(x, 1.0, 5, separable=False), blur(x, 1.0, 5), atol=1e-6)


@pytest.mark.parametrize("name", list(OPTION_SETS))
@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 3, 32, 32), (2, 1, 7, 9)])
def test_ssim_of_an_image_with_itself_is_one(name, shape):
    x = rand(1, shape, F32)
    s = ssim(x, x, **OPTION_SETS[name])
    want_shape = shape[:1] + shape[2:] if name == "saliency_structure" else shape[:1]
    assert s.shape == want_shape
    assert torch.allclose(s.double(), torch.ones_like(s, dtype=F64), atol=1e-5)


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_ssim_falls_as_noise_grows(name):
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    x = (0.5 + 0.3 * torch.sin(xx / 4) * torch.cos(yy / 5)).expand(2, 3, 32, 32)
    noise = torch.randn(2, 3, 32, 32, generator=g)
    scores = []
    for t in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        s = ssim(x, x + t * noise, **OPTION_SETS[name])
        scores.append(s.double().flatten(1).mean(1) if s.dim() > 1 else s.double())
    for hi, lo in itertools.pairwise(scores):
        assert (lo < hi).all(), (name, scores)
    assert (scores[-1] < 0.9).all()


def test_ssim_terms_and_shapes():
    a, b = pair(5, (2, 3, 16, 16), F64)
    full = ssim(a, b)
    assert torch.allclose(full, ssim(a, b, terms="cs*l"), atol=1e-12)  # same quantity, other rounding
    assert torch.allclose(full, ssim(a, b, separable=False), atol=1e-12)  # same filter, other rounding
    assert ssim(a, b, reduction="none").shape == (2, 3, 6, 6)
    assert ssim(a, b, reduction="map", padding="zero").shape == (2, 16, 16)
    assert torch.equal(ssim(a, b), ssim(b, a))
    assert ssim(a, b, out_dtype=F32).dtype == F32 and ssim(a, b, dtype=F32).dtype == F32
    assert torch.equal(ssim(a[:1], b), ssim(a[:1].expand_as(b), b))  # a batch of one broadcasts
    maps = a[:, 0]
    assert torch.equal(ssim(maps, b[:, 0]), ssim(maps[:, None], b[:, :1]))  # (B, H, W) = one channel
    for bad in ({"padding": "circular"}, {"terms": "luminance"}, {"reduction": "sum"}):
        with pytest.raises(ValueError):
            ssim(a, b, **bad)
    with pytest.raises(ValueError):
        ssim(a, b[:, :2])


def test_band_ssim_identical_images():
    x = rand(7, (2, 3, 16, 16), F32, -1, 1)
    d = band_ssim(x, x.clone(), 1.0)
    assert all(v.shape == (2,) and v.dtype == F32 for v in d.values())
    for k in ("ssim", "ssim_low", "ssim_high"):
        assert torch.allclose(d[k], torch.ones(2), atol=1e-6)
    assert (d["rmse_low"] == 0).all() and (d["rmse_high"] == 0).all()
    low, high = split_bands(x, 1.0)
    assert torch.allclose(low + high, x, atol=1e-6) and low.dtype == high.dtype == F32
