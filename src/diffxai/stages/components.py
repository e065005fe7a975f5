"""Stage ``components``: component attribution (CAD), erase / amplify edits and the counterfactual
check of the linear estimate (:mod:`diffxai.methods.components`).

Rules:

* ``components_baseline`` (:func:`baseline`): the unedited model's per-class evaluation, shared by
  every concept;
* ``components_concept`` (per concept, :func:`concept`): attribution for the erase and amplify
  objectives, the counterfactual check, and the edit sweep with its evaluation;
* ``components_aggregate`` (:func:`aggregate`): the contract tables.

The plots are :func:`diffxai.plots.components.plot`. Settings: ``components`` (see
``config/schema.yaml``), ``classes`` = the evaluated classes (``components.eval_classes`` or
``classes``), ``cls`` = the concept's entry among them; the classifier that judges the samples is
``components.classifier`` when the config names one, else ``models.classifier``
(:func:`~diffxai.config.experiment.stage_classifier`). A class entry becomes a condition through
``condition_key`` (its label for a pixel model, its prompt for Stable Diffusion); CAD needs a
class-conditional model (a null condition ``c_b``), which the loaded backend says.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import torch

from diffxai.config.experiment import classifier_spec, condition_key, diffusion_kind, diffusion_location
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.timesteps import uniform_timesteps
from diffxai.io.arrays import save_arrays
from diffxai.io.images import class_images
from diffxai.io.specs import SPECS
from diffxai.io.tables import aggregate_tables, provenance, write_table
from diffxai.methods import components as cad
from diffxai.models.backend import DiffusionBackend
from diffxai.models.classifiers import load_classifier
from diffxai.models.loading import load_backend

log = logging.getLogger(__name__)

EDITS = ("erase", "amplify")

#: the first columns of ``concept_editing`` (the rest follow in the order they are made)
EDITING_FIRST = ["concept", "edit", "rho", "eval_class", "prob", "accuracy", "rule", "k"]


def _backend(params: dict, inputs, device: torch.device) -> DiffusionBackend:
    """The experiment's diffusion model; a model without a null condition is a one-line error."""
    kind = diffusion_kind(params)
    location = diffusion_location(params, inputs.get("ddpm") or None)
    channels = params["data"]["channels"] if kind == "pixel" else None
    backend = load_backend(kind, location, device, channels=channels)
    if not backend.conditional:
        raise DiffxaiError(
            "config.models.diffusion",
            "component attribution needs a class-conditional model "
            "with a null class (train the demo DDPM with label_dropout > 0)",
        )
    return backend


def _sampling(params: dict, backend: DiffusionBackend, section: dict) -> cad.Sampling:
    """How a section (``objective`` / ``evaluation``) samples: DDIM on uniform timesteps for a pixel
    model; Stable Diffusion: ``components.sd_scheduler`` on its own spacing of ``n_steps``."""
    n, guidance, batch = section["n_steps"], section["guidance"], section["batch_size"]
    if diffusion_kind(params) == "stable_diffusion":
        return cad.Sampling(n, guidance, batch, scheduler=params["components"]["sd_scheduler"])
    ts = tuple(int(t) for t in uniform_timesteps(backend.num_train_timesteps, n))
    return cad.Sampling(n, guidance, batch, timesteps=ts)


def _classes(params: dict, backend: DiffusionBackend) -> tuple[torch.Tensor, list[str], list[int]]:
    """The evaluated classes' conditions ``(n_classes, *cond_shape)``, names and classifier indices."""
    kind = diffusion_kind(params)
    classes = params["classes"]
    with torch.no_grad():
        cond = backend.encode([condition_key(c, kind) for c in classes])
    return cond, [c["name"] for c in classes], [int(c["index"]) for c in classes]


def _evaluate(params: dict, backend: DiffusionBackend, clf, classes) -> tuple[pd.DataFrame, torch.Tensor]:
    """Per-class evaluation table (``eval_class, class_index, prob, accuracy, n``) and the images
    ``(n_classes, n, C, H, W)`` of ``components.evaluation``'s fixed-seed samples."""
    ev = params["components"]["evaluation"]
    cond, names, indices = classes
    rows, images = cad.evaluate_classes(
        backend, clf, cond, names, indices, ev["samples_per_class"], _sampling(params, backend, ev), seed=params["seed"]
    )
    return pd.DataFrame(rows), images


def _grid_images(images: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` images per class as uint8 ``(n_classes, n, C, H, W)`` (small files)."""
    return ((images[:, :n].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _score(edit: str, table: pd.DataFrame, base: pd.DataFrame, target: int) -> tuple[float, float, float]:
    """:func:`~diffxai.methods.components.edit_score` of an evaluation table against the baseline
    (both in the evaluated classes' order)."""
    return cad.edit_score(
        edit,
        table["prob"].to_numpy(),
        table["accuracy"].to_numpy(),
        base["prob"].to_numpy(),
        base["accuracy"].to_numpy(),
        target,
    )


def baseline(params: dict, inputs, outputs) -> None:
    """``components/baseline.parquet`` and its sample grid: the unedited model's evaluation
    (``samples_per_class`` fixed-seed samples per class, classified)."""
    device = resolve_device(params["device"])
    backend = _backend(params, inputs, device)
    clf = load_classifier(classifier_spec(params, inputs.get("classifier") or None, "components"), device)
    classes = _classes(params, backend)
    started = time.time()
    table, images = _evaluate(params, backend, clf, classes)
    log.info(
        "baseline evaluation in %.1fs: %s", time.time() - started, table[["eval_class", "accuracy"]].to_dict("records")
    )
    table.insert(0, "edit", "none")
    write_table(table, outputs.table, "component_baseline", provenance(params, device))
    n = params["components"]["evaluation"]["grid_per_class"]
    save_arrays(outputs.samples, {"none": _grid_images(images, n)}, {"classes": classes[1]})


def _concept_images(params: dict, backend: DiffusionBackend) -> torch.Tensor:
    """The concept's real images (``class_images``) in the model's space ``(N, C, h, w)``."""
    x, _ = class_images(params, params["cls"])
    with torch.no_grad():
        return backend.to_model_space(x.to(backend.device))


def _counterfactual(
    params: dict, backend: DiffusionBackend, items: cad.ObjectiveItems, weights: dict, name: str, edit: str
) -> pd.DataFrame:
    """The counterfactual check of one objective on a seeded subset of its items: one row per
    zeroed weight, with the correlations of predicted and actual changes of ``J``."""
    t0 = time.time()
    cf, seed = params["components"]["counterfactual"], params["seed"]
    batch = params["components"]["objective"]["batch_size"]
    m = len(items)
    g = torch.Generator().manual_seed(seed)
    sub_idx = torch.randperm(m, generator=g)[: min(m, cf["n_items"])].sort().values
    sub = items.subset(sub_idx.to(items.x.device))
    a_sub, _ = cad.attribute(backend, sub, weights, batch)
    comps = cad.sample_components(a_sub, cf["n_random"], cf["n_top"], seed, f"{name}/{edit}")
    cfd = pd.DataFrame(cad.counterfactual(backend, sub, a_sub, comps, batch))
    pear, spear = cad.correlations(cfd["predicted_delta"], cfd["actual_delta"])
    cfd.insert(0, "concept", name)
    cfd.insert(1, "objective", edit)
    cfd["n_items"] = len(sub)
    cfd["pearson"], cfd["spearman"] = pear, spear
    rnd = cfd[cfd["group"] == "random"]
    cfd["pearson_random"], cfd["spearman_random"] = cad.correlations(rnd["predicted_delta"], rnd["actual_delta"])
    log.info(
        "%s counterfactual: %d components, pearson %.3f spearman %.3f in %.1fs",
        edit,
        len(cfd),
        pear,
        spear,
        time.time() - t0,
    )
    return cfd


def concept(params: dict, inputs, outputs) -> None:
    """Attribution (erase and amplify objectives), counterfactual check and edit sweep for the
    concept ``params["cls"]`` → ``attribution``, ``editing``, ``counterfactual`` tables and
    ``arrays`` (per-weight attributions and the selected edits' sample grids)."""
    cc = params["components"]
    kind = diffusion_kind(params)
    name = params["cls"]["name"]
    device = resolve_device(params["device"])
    seed, obj = params["seed"], cc["objective"]
    backend = _backend(params, inputs, device)
    weights = cad.select_parameters(backend.unet, list(cc["parameters"] or cad.DEFAULT_PATTERNS[kind]))
    clf = load_classifier(classifier_spec(params, inputs.get("classifier") or None, "components"), device)
    classes = _classes(params, backend)
    names = classes[1]
    target = names.index(name)
    base_rows = pd.read_parquet(inputs.baseline).drop(columns=["edit"])
    n_sel = sum(p.numel() for p in weights.values())
    log.info("%s: %d tensors, %d weights selected", name, len(weights), n_sel)

    t0 = time.time()
    with torch.no_grad():
        cond = backend.encode([condition_key(params["cls"], kind)])
    traj = cad.sample_classes(
        backend,
        cond,
        [name],
        obj["n_samples"],
        _sampling(params, backend, obj),
        seed=seed,
        stage="components-objective",
        record=True,
    )
    items = {"erase": cad.erase_items(backend, traj["x_t"], traj["timesteps"], cond, obj["batch_size"])}
    x0 = traj["sample"] if cc["amplify_images"] == "generated" else _concept_images(params, backend)
    items["amplify"] = cad.amplify_items(backend, x0, cond, name, traj["timesteps"], seed=seed)
    log.info("objective items (%s) in %.1fs", {k: len(v) for k, v in items.items()}, time.time() - t0)

    attributions, frames, cf_frames, arrays = {}, [], [], {}
    cf = cc["counterfactual"]
    for edit in EDITS:
        t0 = time.time()
        attributions[edit], j = cad.attribute(backend, items[edit], weights, obj["batch_size"])
        log.info("%s attribution: J=%.4g in %.1fs", edit, j, time.time() - t0)
        df = pd.DataFrame(cad.attribution_rows(attributions[edit], cc["top_fraction"]))
        df.insert(0, "concept", name)
        df.insert(1, "objective", edit)
        df["objective_value"] = j
        frames.append(df)
        if cc["save_attributions"]:
            arrays.update({f"{edit}/{n}": a for n, a in attributions[edit].items()})
        if cf["n_random"] + cf["n_top"] > 0:
            cf_frames.append(_counterfactual(params, backend, items[edit], weights, name, edit))

    rows = []
    base = base_rows.set_index("eval_class").loc[names].reset_index()
    n_grid = cc["evaluation"]["grid_per_class"]
    for edit in EDITS:
        best = None
        for i, point in enumerate(cc["sweep"]):
            per_row = point["rule"] == "per_row"
            value = point["rho"] if per_row else point["k"]
            masks = cad.edit_masks(attributions[edit], point["rule"], value)
            n_edited = int(sum(int(m.sum()) for m in masks.values()))
            t0 = time.time()
            if n_edited == 0:
                table, images = base_rows.copy(), None
            else:
                table, images = _evaluate(params, backend.with_unet(cad.apply_edit(backend.unet, masks)), clf, classes)
            score, target_acc, retention = _score(edit, table, base, target)
            log.info(
                "%s %s=%s: %d weights zeroed, target acc %.2f, retention %.2f (%.1fs)",
                edit,
                point["rule"],
                value,
                n_edited,
                target_acc,
                retention,
                time.time() - t0,
            )
            table = table.assign(
                concept=name,
                edit=edit,
                rule=point["rule"],
                rho=float(value) if per_row else n_edited / n_sel,
                k=-1 if per_row else int(value),
                sweep_index=i,
                n_edited=n_edited,
                n_selected=n_sel,
                score=score,
                retention=retention,
            )
            rows.append(table)
            if n_edited > 0 and (best is None or score > best[0]):
                best = (score, i, images)
        sel = best[1] if best else -1
        for t in rows:
            if t["edit"].iloc[0] == edit:
                t["selected"] = bool(t["sweep_index"].iloc[0] == sel)
        if best is not None:
            arrays[f"samples/{edit}"] = _grid_images(best[2], n_grid)
    none = base_rows.assign(
        concept=name,
        edit="none",
        rule="none",
        rho=0.0,
        k=0,
        sweep_index=-1,
        n_edited=0,
        n_selected=n_sel,
        score=0.0,
        retention=1.0,
        selected=True,
    )
    editing = pd.concat([none] + rows, ignore_index=True)
    editing["is_target"] = editing["eval_class"] == name
    editing = editing[EDITING_FIRST + [c for c in editing.columns if c not in EDITING_FIRST]]

    meta = provenance(params, device)
    write_table(pd.concat(frames, ignore_index=True), outputs.attribution, "component_attribution", meta)
    write_table(editing, outputs.editing, "concept_editing", meta)
    counterfactual = (
        pd.concat(cf_frames, ignore_index=True)
        if cf_frames
        else pd.DataFrame(columns=SPECS["component_counterfactual"].names)
    )
    write_table(counterfactual, outputs.counterfactual, "component_counterfactual", meta)
    save_arrays(
        outputs.arrays,
        arrays,
        {
            "concept": name,
            "classes": names,
            "layout": "attributions: '<objective>/<parameter>' (parameter shape); "
            "samples/<edit>: uint8 (n_classes, n, C, H, W) of the selected edit",
        },
    )


def aggregate(params: dict, inputs, outputs) -> None:
    """The contract tables ``component_attribution``, ``concept_editing`` and ``component_counterfactual``
    (every concept's job tables, in concept order)."""
    aggregate_tables(
        params,
        {
            outputs.attribution: (list(inputs.attribution), "component_attribution"),
            outputs.editing: (list(inputs.editing), "concept_editing"),
            outputs.counterfactual: (list(inputs.counterfactual), "component_counterfactual"),
        },
    )
