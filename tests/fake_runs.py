"""Synthetic finished runs for the explorer's tests: every file a run has (trajectories, maps,
tables, schedule samples, component edits, optionally the token table), with random contents of
the right shapes, written in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffxai.io.arrays import save_arrays

TIMESTEPS = [999, 749, 500, 250, 0]
VIEWS = ["x_t", "x0_pred"]
ATTR_STEPS = [0, 2, 4]
SAL_STEPS, SAL_ALL = [1, 3], [999, 666, 333, 0]


def _table(rows: list, names: str, path: Path) -> None:
    """``rows`` (tuples) with the space-separated column ``names`` as a Parquet table at ``path``."""
    pd.DataFrame(rows, columns=names.split()).to_parquet(path)


def fake_run(
    root: Path,
    classes=("digit_3", "digit_7"),
    n_images: int = 2,
    n_draws: int = 2,
    size: int = 8,
    timesteps=TIMESTEPS,
    attr_steps=ATTR_STEPS,
    methods=("ig", "occlusion"),
    saliency=("digit_3",),
    tokens: bool = False,
    seed: int = 0,
) -> Path:
    """Every file a finished run has, with random contents of the right shapes (results/NAME)."""
    g = np.random.default_rng(seed)
    s = len(timesteps)
    ids = [f"img{i}" for i in range(n_images)]
    rnd = lambda *shape: torch.from_numpy(g.uniform(-1, 1, shape).astype(np.float32))  # noqa: E731
    lik, faith, sal_rows = [], [], []
    for ci, cls in enumerate(classes):
        save_arrays(
            root / "trajectories" / f"{cls}.safetensors",
            {
                "x_t": rnd(n_images, n_draws, s, 1, size, size),
                "x0_pred": rnd(n_images, n_draws, s, 1, size, size),
                "timesteps": torch.tensor(timesteps),
                "x0": rnd(n_images, 1, size, size),
            },
            {"views": VIEWS, "image_ids": ids, "class_name": cls, "class_index": ci, "mode": "forward"},
        )
        for v in VIEWS:
            for i in ids:
                for d in range(n_draws):
                    for st, t in enumerate(timesteps):
                        p = float(g.uniform())
                        lik.append((cls, ci, i, d, st, t, v, p, float(np.log(p)), int(g.integers(10)), p, 0.5))
        for m in methods:
            maps = rnd(1, 1, len(attr_steps), 2, size, size)
            bad = torch.zeros(1, 1, len(attr_steps), 2, dtype=torch.bool)
            save_arrays(
                root / "maps" / "attribution" / m / f"{cls}.safetensors",
                {
                    "maps": maps,
                    "nonfinite": bad,
                    "steps": torch.tensor(attr_steps),
                    "timesteps": torch.tensor([timesteps[x] for x in attr_steps]),
                    "draws": torch.tensor([0]),
                },
                {"class_name": cls, "method": m, "views": VIEWS, "image_ids": ids[:1], "captum": m.upper()},
            )
            for v in VIEWS:
                for st in attr_steps:
                    for metric in ("deletion_auc", "insertion_auc"):
                        faith.append((cls, ids[0], 0, st, timesteps[st], v, m, metric, g.uniform(), g.uniform(), False))
    tables = root / "tables"
    tables.mkdir(parents=True)
    cols = "class_name class_index image_id draw step timestep view prob logit top1_index top1_prob entropy"
    _table(lik, cols, tables / "likelihood.parquet")
    cols = "class_name view step_start step_end max_slope step_half final_prob"
    _table([(c, v, 1, 3, 0.2, 2, 0.9) for c in classes for v in VIEWS], cols, tables / "critical_intervals.parquet")
    cols = "class_name image_id draw step timestep view method metric value baseline_value nonfinite"
    _table(faith, cols, tables / "faithfulness.parquet")
    for cls in saliency:
        for m in ("dfrise", "dfcam"):
            save_arrays(
                root / "maps" / "saliency" / m / f"{cls}.safetensors",
                {
                    "maps": rnd(1, 2, size, size).abs(),
                    "display": rnd(1, 2, 1, size, size),
                    "x_t": rnd(1, 2, 1, size, size),
                    "final": rnd(1, 1, size, size),
                    "steps": torch.tensor(SAL_STEPS),
                    "timesteps": torch.tensor([SAL_ALL[x] for x in SAL_STEPS]),
                },
                {"class_name": cls, "method": m, "model_type": "pixel", "all_timesteps": SAL_ALL, "prompt": None},
            )
            for st, t in zip(SAL_STEPS, [SAL_ALL[x] for x in SAL_STEPS]):
                sal_rows.append((cls, 0, st, t, m, "all", g.uniform(), g.uniform(), g.uniform(), g.uniform()))
    cols = "class_name sample step timestep method layer deletion_auc insertion_auc"
    _table(sal_rows, cols + " random_deletion_auc random_insertion_auc", tables / "saliency_stats.parquet")
    sampling, steps = [], []
    for name, ts in (("uniform", [999, 666, 333, 0]), ("early", [999, 875, 749, 499])):
        save_arrays(
            root / "samples" / "schedules" / f"{name}.safetensors",
            {"samples": rnd(len(classes), 2, 1, size, size), "timesteps": torch.tensor(ts)},
            {"schedule": name, "kind": name, "gamma": None, "class_names": list(classes)},
        )
        for cls in classes:
            for seed_ in range(2):
                sampling.append((name, cls, seed_, g.uniform(), 3, True))
                for st, t in enumerate(ts):
                    steps.append((name, cls, seed_, st, t, g.uniform()))
    _table(sampling, "schedule class_name seed prob top1_index correct", tables / "schedule_sampling.parquet")
    _table(steps, "schedule class_name seed step timestep prob", tables / "schedule_steps.parquet")
    u8 = lambda *shape: torch.from_numpy(g.integers(0, 256, shape).astype(np.uint8))  # noqa: E731
    save_arrays(
        root / "components" / "baseline_samples.safetensors",
        {"none": u8(len(classes), 2, 1, size, size)},
        {"classes": list(classes)},
    )
    edits = []
    for concept in classes:
        save_arrays(
            root / "components" / concept / "arrays.safetensors",
            {f"samples/{e}": u8(len(classes), 2, 1, size, size) for e in ("erase", "amplify")},
            {"concept": concept, "classes": list(classes)},
        )
        for e in ("none", "erase", "amplify"):
            for c in classes:
                edits.append((concept, e, c, g.uniform(), g.uniform(), True, "global", 5.0, 3))
    _table(edits, "concept edit eval_class prob accuracy selected rule k n_edited", tables / "concept_editing.parquet")
    if tokens:
        rows = [
            (classes[0], smp, st, t, tok, ti, "all", "relevance", g.uniform())
            for smp in range(2)
            for st, t in enumerate(SAL_ALL)
            for ti, tok in enumerate(["a", "red", "digit"])
        ]
        cols = "prompt sample step timestep token token_index layer method relevance"
        _table(rows, cols, tables / "token_relevance.parquet")
    return root
