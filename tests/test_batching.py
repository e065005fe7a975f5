"""Out-of-memory halving and progress logs of every batched stage.

An out-of-memory error is injected by a forward pre-hook on the real (tiny) network: it raises
``torch.OutOfMemoryError`` whenever the network sees a batch larger than ``k``. Each stage must
then halve its batch, say so in the log, and return what a run without the error returns: bit
for bit what a run with batch size ``k`` computes (the same chunks reach the network), and the
large-batch run up to float round-off. Any other exception must propagate.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import partial

import pytest
import torch

from diffxai.core.batching import BatchSize, Progress, is_oom, iter_batches, map_batches, progress_seconds
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import make_schedule
from diffxai.methods import components as cad
from diffxai.methods.saliency import deletion_insertion, df_cam, df_rise, fixed_step_denoiser, unet_layers
from diffxai.metrics.faithfulness import deletion_insertion as generic_deletion_insertion
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import seeded_noise

torch.set_num_threads(1)
HALVING = "out of memory: halving the batch size to"
LOGGER = "diffxai.core.batching"  # the progress and out-of-memory lines


class InjectedError:
    """A forward pre-hook that raises when the module's input batch is larger than ``max_batch``.

    The first ``after`` oversized calls pass (so an error can hit a chunk half-way, after it has
    consumed generator state); ``error`` is the exception to raise (default: an injected OOM).
    """

    def __init__(self, max_batch: int, after: int = 0, error: Exception | None = None):
        self.max_batch, self.after, self.error = max_batch, after, error
        self.oversized = 0
        self.sizes: list[int] = []

    def __call__(self, module, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()))
        self.sizes.append(int(x.shape[0]))
        if x.shape[0] > self.max_batch:
            self.oversized += 1
            if self.oversized > self.after:
                raise self.error or torch.OutOfMemoryError("CUDA out of memory (injected)")


@contextmanager
def failing(module: torch.nn.Module, max_batch: int, after: int = 0, error: Exception | None = None):
    hook = InjectedError(max_batch, after, error)
    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield hook
    finally:
        handle.remove()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_close(a: dict, b: dict, tol: float = 1e-5) -> None:
    """Equal up to float round-off relative to each tensor's scale (other batch sizes, other kernels)."""
    assert a.keys() == b.keys()
    for key in a:
        scale = max(1.0, b[key].abs().max().item())
        torch.testing.assert_close(a[key], b[key], rtol=tol, atol=tol * scale, msg=key)


@pytest.fixture(scope="module")
def pixel_model():
    from diffusers import DDPMScheduler

    from diffxai.models.demo import build_demo_unet
    from diffxai.models.pixel import DiffusionModel

    torch.manual_seed(0)
    unet = build_demo_unet(8, 1, 10, (8, 16)).eval().requires_grad_(False)
    return DiffusionModel(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000), null_label=10)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from diffxai.models.sd import load_sd
    from tiny_sd import build_tiny_sd

    return load_sd(str(build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")))


def _noise(n: int) -> torch.Tensor:
    return seeded_noise((1, 8, 8), [make_generator(0, "batching", i) for i in range(n)])


def _denoiser(model, t: int = 500, label: int = 3, guidance: float = 2.0, t_next: int | None = None):
    """The pixel model's guided denoiser at timestep ``t`` for class ``label``."""
    return fixed_step_denoiser(model, t, model.encode([label]), guidance, t_next=t_next)


# ------------------------------------------------------------------------------ the mechanism


def test_iter_batches_halves_retries_the_same_slice_and_the_halving_sticks(caplog):
    calls: list[slice] = []

    def fn(sl):
        calls.append(sl)
        if sl.stop - sl.start > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return list(range(sl.start, sl.stop))

    with caplog.at_level("WARNING", logger=LOGGER):
        got = list(iter_batches(fn, 12, 16, label="stage"))
    assert [x for _, out in got for x in out] == list(range(12))
    assert [(s.start, s.stop) for s, _ in got] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert [s.stop - s.start for s in calls] == [12, 6, 3, 3, 3, 3]  # 12 -> 6 -> 3, then 3 for good
    assert "stage: out of memory: halving the batch size to 6 and retrying items 0.." in caplog.text
    assert "halving the batch size to 3" in caplog.text
    # a short chunk that fails is halved from its own size (5 -> 2), not from the batch size
    caplog.clear()
    with caplog.at_level("WARNING", logger=LOGGER):
        got = list(iter_batches(fn, 5, 8))
    assert [(s.start, s.stop) for s, _ in got] == [(0, 2), (2, 4), (4, 5)]
    assert "halving the batch size to 2 and retrying items 0.." in caplog.text
    # a shared BatchSize carries the halving over to the next call
    size = BatchSize(8)
    list(iter_batches(fn, 10, size))
    assert size.value == 2
    calls.clear()
    list(iter_batches(fn, 10, size))
    assert {s.stop - s.start for s in calls} == {2}


def test_iter_batches_does_not_swallow_other_errors_or_a_batch_of_one():
    def boom(sl):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(iter_batches(boom, 5, 4))

    def always_oom(sl):
        raise RuntimeError("CUDA error: out of memory")  # an OOM by message

    assert is_oom(RuntimeError("CUDA error: out of memory")) and not is_oom(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="out of memory"):
        list(iter_batches(always_oom, 5, 4))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(iter_batches(boom, 5, 0))


def test_progress_lines_have_counts_rates_and_time_left(monkeypatch, caplog):
    monkeypatch.setenv("DIFFXAI_PROGRESS_SECONDS", "0")
    assert progress_seconds() == 0
    with caplog.at_level("INFO", logger=LOGGER):
        out = map_batches(lambda x: x * 2, torch.arange(10.0), batch_size=4, what="images", label="scaling")
    assert torch.equal(out, torch.arange(10.0) * 2)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert [ln.split(" (")[0] for ln in lines] == [f"scaling: {k}/10 images" for k in (4, 8, 10)]
    assert all("images/s" in ln for ln in lines) and "left)" in lines[0] and "left" not in lines[-1]
    # the default (30 s) logs nothing for a quick stage; a bad value falls back to it
    caplog.clear()
    monkeypatch.delenv("DIFFXAI_PROGRESS_SECONDS")
    with caplog.at_level("INFO", logger=LOGGER):
        map_batches(lambda x: x, torch.arange(10.0), batch_size=4)
        p = Progress(3)
        p.advance(3)
    assert not caplog.records and progress_seconds() == 30
    monkeypatch.setenv("DIFFXAI_PROGRESS_SECONDS", "soon")
    assert progress_seconds() == 30


def test_stage_progress_appears_in_the_log(pixel_model, monkeypatch, caplog):
    monkeypatch.setenv("DIFFXAI_PROGRESS_SECONDS", "0")
    ts = make_schedule("uniform", 1000, 3).timesteps
    den = _denoiser(pixel_model)
    with caplog.at_level("INFO", logger=LOGGER):
        labels = pixel_model.encode([1, 2, 3, 4, 5])
        sample(pixel_model, _noise(5), timesteps=ts, cond=labels, guidance=2.0, batch_size=2)
        df_rise(den, _noise(1)[0], generator=torch.Generator().manual_seed(0), n_masks=20, batch_size=8)
    text = caplog.text
    for line in (
        "ddim sampling: 2/5 samples (",
        "ddim sampling: 5/5 samples (",
        "df_rise: 8/20 masks (",
        "df_rise: 20/20 masks (",
    ):
        assert line in text
    assert "samples/s" in text and "masks/s" in text and "s left)" in text


# ------------------------------------------------------------------------------ sampling


def test_ddim_sample_survives_out_of_memory(pixel_model, caplog):
    ts = make_schedule("early", 1000, 5, 10).timesteps
    x, lab = _noise(20), pixel_model.encode([i % 10 for i in range(20)])
    run = partial(sample, pixel_model, x, timesteps=ts, cond=lab, guidance=2.0, record=True)
    big, small = run(batch_size=256), run(batch_size=2)
    with failing(pixel_model.unet, 4) as hook, caplog.at_level("WARNING"):  # CFG: 2 rows per sample
        got = run(batch_size=16)
    assert hook.sizes[:3] == [32, 16, 8] and hook.oversized == 3  # 16 samples, 8, 4, then 2 for good
    assert_same(got, small)
    # other batch sizes change conv round-off, which DDIM amplifies by 1/sqrt(abar) at early steps
    assert_close(got, big, tol=1e-3)
    assert "halving the batch size to 8 and retrying items 0.." in caplog.text
    assert "halving the batch size to 4 and retrying items 0.." in caplog.text
    assert "halving the batch size to 2 and retrying items 0.." in caplog.text
    with failing(pixel_model.unet, 4, error=ValueError("not an OOM")), pytest.raises(ValueError, match="not an OOM"):
        run(batch_size=8)


@pytest.mark.parametrize("sampler", ["ddpm", "dpmsolver++"])
def test_scheduler_sample_survives_out_of_memory_mid_chunk(pixel_model, sampler, caplog):
    """The error hits step 3 of the first chunk, after DDPM drew noise from the generators: the
    retry must restore them, or the samples differ from a run that never failed."""
    ts = make_schedule("latter", 1000, 5, 5).timesteps
    x, lab = _noise(5), pixel_model.encode([2, 5, 7, 1, 3])

    def run(batch_size):
        gens = [make_generator(0, "ddpm", i) for i in range(5)]
        return sample(
            pixel_model,
            x,
            timesteps=ts,
            cond=lab,
            guidance=2.0,
            scheduler=sampler,
            step_generators=gens,
            record=True,
            batch_size=batch_size,
        )

    big, small = run(256), run(2)
    with failing(pixel_model.unet, 4, after=2) as hook, caplog.at_level("WARNING"):
        got = run(8)
    assert hook.sizes[:3] == [10, 10, 10]  # two steps of the 5-sample chunk ran before the error
    assert_same(got, small)
    assert_close(got, big)
    assert HALVING in caplog.text
    with failing(pixel_model.unet, 4, error=KeyError("other")), pytest.raises(KeyError):
        run(8)


def test_sd_sample_survives_out_of_memory(tiny_sd, caplog):
    x = seeded_noise(tiny_sd.sample_shape(), [make_generator(0, "batching", k) for k in range(3)])
    cond = tiny_sd.encode(["a red car", "a cat", "a dog"])

    def run(batch_size):
        gens = [make_generator(0, "batching", "step-noise", k) for k in range(3)]
        return sample(
            tiny_sd,
            x,
            n_steps=3,
            cond=cond,
            guidance=7.5,
            scheduler="ddpm",
            step_generators=gens,
            record=True,
            decode=True,
            batch_size=batch_size,
        )

    big, small = run(batch_size=8), run(batch_size=1)
    with failing(tiny_sd.unet, 2, after=1) as hook, caplog.at_level("WARNING"):  # CFG: 2 rows per prompt
        got = run(batch_size=8)
    assert hook.sizes[:2] == [6, 6]
    assert_same(got, small)
    assert_close(got, big)
    assert "halving the batch size to 1 and retrying items 0.." in caplog.text  # 3 prompts, then 1
    with failing(tiny_sd.unet, 2, error=ValueError("bad")), pytest.raises(ValueError, match="bad"):
        run(batch_size=8)


# ------------------------------------------------------------------------------ saliency


def test_df_rise_splits_the_forward_passes_not_the_masks(pixel_model, caplog):
    den = _denoiser(pixel_model)
    x = _noise(1)[0]
    run = partial(df_rise, den, x, n_masks=40, mask="grid", grid_size=4, estimator="contrast")
    ref = run(generator=torch.Generator().manual_seed(3), batch_size=16)
    with failing(pixel_model.unet, 8) as hook, caplog.at_level("WARNING"):  # CFG: 2 rows per mask
        got = run(generator=torch.Generator().manual_seed(3), batch_size=16)
    # only the first mask chunk fails (16 -> 8 -> 4): the halved size sticks for the other chunks
    assert caplog.text.count(HALVING) == 2 and hook.oversized == 2
    assert max(hook.sizes[3:]) == 8
    # the same masks (grid masks drawn in other chunk sizes would differ entirely): same map
    torch.testing.assert_close(got.raw, ref.raw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.map, ref.map, rtol=1e-5, atol=1e-5)
    assert got.n_masks_used == ref.n_masks_used == 40
    with failing(pixel_model.unet, 8, error=ValueError("bad")), pytest.raises(ValueError, match="bad"):
        run(generator=torch.Generator().manual_seed(3), batch_size=16)


def _cam_maps(den, layers: list[str], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    res = df_cam(den, x, layers)
    return res.map, res.layer_maps


def test_df_cam_through_map_batches_survives_out_of_memory(pixel_model, caplog):
    den = _denoiser(pixel_model)
    x = _noise(4)
    layers = unet_layers(pixel_model.unet)
    cam = partial(_cam_maps, den, layers)  # DF-CAM of a batch of inputs, as the saliency stage runs it
    one = map_batches(cam, x, batch_size=1)
    big = map_batches(cam, x, batch_size=4)
    with failing(pixel_model.unet, 2), caplog.at_level("WARNING"):
        got = map_batches(cam, x, batch_size=4)
    assert "halving the batch size to 1" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(got, one))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, big))
    assert not any(m._forward_hooks for m in pixel_model.unet.modules())  # no leaked DF-CAM hooks
    with failing(pixel_model.unet, 2, error=ValueError("bad")), pytest.raises(ValueError, match="bad"):
        map_batches(cam, x, batch_size=4)
    assert not any(m._forward_hooks for m in pixel_model.unet.modules())


def test_deletion_insertion_survives_out_of_memory(pixel_model, caplog):
    den = _denoiser(pixel_model, t_next=400)
    x = _noise(3)
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    run = partial(deletion_insertion, den, x, maps, n_points=5)
    big, small = run(batch_size=256), run(batch_size=3)
    with failing(pixel_model.unet, 6) as hook, caplog.at_level("WARNING"):  # CFG: 2 rows per input
        got = run(batch_size=12)
    assert "halving the batch size to 6" in caplog.text and "halving the batch size to 3" in caplog.text
    assert hook.oversized == 2  # the insertion game starts at the halved size
    assert_same(got, small)
    assert_close(got, big)
    with failing(pixel_model.unet, 6, error=ValueError("bad")), pytest.raises(ValueError, match="bad"):
        run(batch_size=12)


def test_generic_deletion_insertion_survives_out_of_memory(caplog):
    from diffxai.models.classifiers import DemoCNN

    torch.manual_seed(0)
    net = DemoCNN(10, 1, 4).eval()
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(2))

    def score(x, src):
        return torch.softmax(net(x), -1)[:, 3]

    run = partial(generic_deletion_insertion, images, maps, score, n_points=6)
    big, small = run(batch_size=1024), run(batch_size=4)
    with failing(net, 4), caplog.at_level("WARNING"):
        got = run(batch_size=16)
    assert "halving the batch size to 8" in caplog.text and "halving the batch size to 4" in caplog.text
    assert_same(got, small)
    assert_close(got, big)
    with failing(net, 4, error=ValueError("bad")), pytest.raises(ValueError, match="bad"):
        run(batch_size=16)


# ------------------------------------------------------------------------------ components (CAD)


def test_component_attribution_survives_out_of_memory(pixel_model, caplog):
    model = pixel_model
    concept = model.encode([3])
    sampling = cad.Sampling(n_steps=4, guidance=2.0, batch_size=8)
    traj = cad.sample_classes(model, concept, ["digit_3"], 3, sampling, seed=0, stage="test", record=True)
    params = cad.select_parameters(model.unet, cad.DEFAULT_PATTERNS["pixel"])
    items = cad.erase_items(model, traj["x_t"], traj["timesteps"], concept, batch_size=3)  # 12 items
    with failing(model.unet, 3), caplog.at_level("WARNING"):
        got_items = cad.erase_items(model, traj["x_t"], traj["timesteps"], concept, batch_size=12)
    assert torch.equal(got_items.target, items.target)
    assert "erase target: out of memory: halving the batch size to 6" in caplog.text

    a_small, j_small = cad.attribute(model, items, params, batch_size=3)
    a_big, j_big = cad.attribute(model, items, params, batch_size=12)
    caplog.clear()
    with failing(model.unet, 3), caplog.at_level("WARNING"):
        a_got, j_got = cad.attribute(model, items, params, batch_size=12)
    assert "attribution: out of memory: halving the batch size to 3" in caplog.text
    assert j_got == j_small and j_got == pytest.approx(j_big, rel=1e-6)
    # round-off is relative to the largest attribution: some tensors' attributions are round-off
    # themselves (a time-embedding shift that a per-channel GroupNorm removes), ~1e-7 in every run
    scale = max(a.abs().max().item() for a in a_big.values())
    for name in a_got:  # only successful chunks were accumulated: no double-counted gradient
        assert torch.equal(a_got[name], a_small[name]), name
        torch.testing.assert_close(a_got[name], a_big[name], rtol=1e-5, atol=1e-5 * scale)
    assert all(not p.requires_grad and p.grad is None for p in model.unet.parameters())

    for refresh in (False, True):  # refresh: both branches in one forward, 2 rows per item
        small = cad.objective_value(model, items, 1, refresh_target=refresh)
        with failing(model.unet, 2):
            got = cad.objective_value(model, items, 12, refresh_target=refresh)
        assert got == small
        assert got == pytest.approx(cad.objective_value(model, items, 12, refresh_target=refresh), rel=1e-6)
    with failing(model.unet, 3, error=ValueError("bad")), pytest.raises(ValueError, match="bad"):
        cad.attribute(model, items, params, batch_size=12)
    assert all(not p.requires_grad and p.grad is None for p in model.unet.parameters())


def test_progress_lines_for_a_shared_counter(monkeypatch, caplog):
    """Several iter_batches calls can feed one Progress (as DF-RISE's mask chunks do)."""
    monkeypatch.setenv("DIFFXAI_PROGRESS_SECONDS", "0")
    prog = Progress(6, "masks", "df_rise")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(2):
            list(iter_batches(lambda sl: None, 3, 2, progress=prog))
    msgs = [r.getMessage().split(" (")[0] for r in caplog.records]
    assert msgs == ["df_rise: 2/6 masks", "df_rise: 3/6 masks", "df_rise: 5/6 masks", "df_rise: 6/6 masks"]
