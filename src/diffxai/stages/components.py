"""TODO docstring."""

from __future__ import annotations

import logging
import time

import pandas as pd
import torch

from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.tables import aggregate_tables, provenance, write_parquet
from diffxai.methods import components as cad
from diffxai.config.experiment import eval_classes
from diffxai.config.experiment import is_sd

log = logging.getLogger(__name__)


EDITS = ("erase", "amplify")


def check_components_config(config: dict) -> dict:
    """Validate the ``components`` section up front (one-line errors); returns it."""
    cc = config["components"]
    names = [c["name"] for c in eval_classes(config)]
    if not cc["concepts"]:
        raise DiffxaiError("config.components.concepts", "list at least one concept (a config.classes name)")
    for i, concept in enumerate(cc["concepts"]):
        if concept not in names:
            raise DiffxaiError(f"config.components.concepts[{i}]", f"unknown concept {concept!r} (known classes: {names})")
    if not cc["sweep"]:
        raise DiffxaiError("config.components.sweep", "list at least one edit ({rule: per_row, rho: ...} or {rule: global, k: ...})")
    for i, point in enumerate(cc["sweep"]):
        where = f"config.components.sweep[{i}]"
        if point["rule"] == "per_row":
            if point.get("rho") is None:
                raise DiffxaiError(f"{where}.rho", "the per_row rule needs rho in (0, 1)")
            cad.check_rho(point["rho"], f"{where}.rho")
        elif point["rule"] == "global":
            if point.get("k") is None or int(point["k"]) < 1:
                raise DiffxaiError(f"{where}.k", "the global rule needs k >= 1")
        else:
            raise DiffxaiError(f"{where}.rule", f"unknown edit rule {point['rule']!r} (use one of {cad.EDIT_RULES})")
    if cc["amplify_images"] == "real" and config["models"]["diffusion"]["type"] == "stable_diffusion" \
            and config["data"]["source"] != "folder":  # fmt: skip
        raise DiffxaiError("config.components.amplify_images", "real images for Stable Diffusion need data.source: folder")
    return cc




def _concept(config: dict, name: str) -> dict:
    from diffxai.config.experiment import class_spec

    return class_spec(config, name, eval_classes(config), what="concept")




def default_patterns(config: dict) -> list[str]:
    pats = config["components"]["parameters"]
    if pats:
        return list(pats)
    return list(cad.SD_DEFAULT_PATTERNS if is_sd(config) else cad.PIXEL_DEFAULT_PATTERNS)


def load_concept_model(config: dict, ddpm_dir: str | None, device) -> cad.ConceptModel:
    from diffxai.models.pixel import config_diffusion
    from diffxai.config.experiment import diffusion_location

    location = diffusion_location(config, ddpm_dir)
    if is_sd(config):
        from diffxai.models.sd import load_sd

        return cad.SDConceptModel(load_sd(location, device), scheduler=config["components"]["sd_scheduler"])
    return cad.PixelConceptModel(config_diffusion(config, ddpm_dir, device))


def _classifier(config: dict, classifier_path: str | None, device):
    from diffxai.models.classifiers import load_classifier
    from diffxai.config.experiment import classifier_spec

    return load_classifier(classifier_spec(config, classifier_path), device)


def _evaluate(config, model, clf, stage="components-eval"):
    ev = config["components"]["evaluation"]
    return cad.evaluate_classes(model, clf, eval_classes(config), ev["samples_per_class"], n_steps=ev["n_steps"],
                                guidance=ev["guidance"], seed=config["seed"], batch_size=ev["batch_size"], stage=stage)  # fmt: skip


def _grid_images(images: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` images per class as uint8 ``(n_classes, n, C, H, W)`` (small files)."""
    return ((images[:, :n].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def components_baseline(config: dict, ddpm_dir: str | None, classifier_path: str | None, out_table: str,
                        out_samples: str) -> None:  # fmt: skip
    """Evaluate the unedited model: ``samples_per_class`` samples per class, fixed seeds."""
    check_components_config(config)
    device = resolve_device(config["device"])
    model = load_concept_model(config, ddpm_dir, device)
    clf = _classifier(config, classifier_path, device)
    started = time.time()
    table, images = _evaluate(config, model, clf)
    log.info("baseline evaluation in %.1fs: %s", time.time() - started, table[["eval_class", "accuracy"]].to_dict("records"))
    table.insert(0, "edit", "none")
    write_parquet(table, out_table, provenance(config, device))
    n = config["components"]["evaluation"]["grid_per_class"]
    save_arrays(out_samples, {"none": _grid_images(images, n)}, {"classes": [c["name"] for c in eval_classes(config)]})


def _concept_images(config, model, concept, gen_latents):
    """Concept images for J_a: the generated ones, or real ones (``class_images``) mapped to model space."""
    if config["components"]["amplify_images"] == "generated":
        return gen_latents
    from diffxai.io.images import class_images

    x, _ = class_images(config, concept)
    return model.to_latents(x)


def components_concept(config: dict, concept_name: str, ddpm_dir: str | None, classifier_path: str | None,
                       baseline_table: str, out_attribution: str, out_editing: str, out_counterfactual: str,
                       out_arrays: str) -> None:  # fmt: skip
    """Attribution, counterfactual check and edit sweep for one concept (see module doc)."""
    cc = check_components_config(config)
    concept = _concept(config, concept_name)
    device = resolve_device(config["device"])
    seed, obj = config["seed"], cc["objective"]
    model = load_concept_model(config, ddpm_dir, device)
    params = cad.select_parameters(model.unet, default_patterns(config))
    clf = _classifier(config, classifier_path, device)
    baseline = pd.read_parquet(baseline_table)
    n_sel = sum(p.numel() for p in params.values())
    log.info("%s: %d tensors, %d weights selected", concept_name, len(params), n_sel)

    t0 = time.time()
    traj = model.sample([concept], obj["n_samples"], n_steps=obj["n_steps"], guidance=obj["guidance"], seed=seed,
                        stage="components-objective", record=True, batch_size=obj["batch_size"])  # fmt: skip
    items = {"erase": cad.erase_items(model, traj["x_t"], traj["timesteps"], concept, obj["batch_size"])}
    x0 = _concept_images(config, model, concept, traj["latents"])
    items["amplify"] = cad.amplify_items(model, x0, concept, traj["timesteps"], seed=seed)
    log.info("objective items (%s) in %.1fs", {k: len(v) for k, v in items.items()}, time.time() - t0)

    attributions, frames, cf_frames, arrays = {}, [], [], {}
    for edit in EDITS:
        t0 = time.time()
        attributions[edit], j = cad.attribute(model, items[edit], params, obj["batch_size"])
        log.info("%s attribution: J=%.4g in %.1fs", edit, j, time.time() - t0)
        df = cad.attribution_summary(concept_name, attributions[edit], cc["top_fraction"])
        df.insert(1, "objective", edit)
        df["objective_value"] = j
        frames.append(df)
        if cc["save_attributions"]:
            arrays.update({f"{edit}/{n}": a for n, a in attributions[edit].items()})
        # faithfulness of the linear estimate on a seeded subset of the items
        cf = cc["counterfactual"]
        if cf["n_random"] + cf["n_top"] > 0:
            t0 = time.time()
            m = len(items[edit])
            g = torch.Generator().manual_seed(seed)
            sub_idx = torch.randperm(m, generator=g)[: min(m, cf["n_items"])].sort().values
            sub = items[edit].subset(sub_idx.to(items[edit].x.device))
            a_sub, _ = cad.attribute(model, sub, params, obj["batch_size"])
            comps = cad.sample_components(a_sub, cf["n_random"], cf["n_top"], seed, f"{concept_name}/{edit}")
            cfd = cad.counterfactual(model, sub, a_sub, comps, obj["batch_size"])
            pear, spear = cad.correlations(cfd["predicted_delta"], cfd["actual_delta"])
            cfd.insert(0, "concept", concept_name)
            cfd.insert(1, "objective", edit)
            cfd["n_items"] = len(sub)
            cfd["pearson"], cfd["spearman"] = pear, spear
            rnd = cfd[cfd["group"] == "random"]
            cfd["pearson_random"], cfd["spearman_random"] = cad.correlations(rnd["predicted_delta"], rnd["actual_delta"])
            cf_frames.append(cfd)
            log.info("%s counterfactual: %d components, pearson %.3f spearman %.3f in %.1fs", edit, len(cfd), pear,
                     spear, time.time() - t0)  # fmt: skip

    rows = []
    base_rows = baseline.drop(columns=["edit"])
    n_grid = cc["evaluation"]["grid_per_class"]
    for edit in EDITS:
        best = None
        for i, point in enumerate(cc["sweep"]):
            value = point["rho"] if point["rule"] == "per_row" else point["k"]
            masks = cad.edit_masks(attributions[edit], point["rule"], value)
            n_edited = int(sum(int(m.sum()) for m in masks.values()))
            t0 = time.time()
            if n_edited == 0:
                table, images = base_rows.copy(), None
            else:
                edited = model.with_unet(cad.apply_edit(model.unet, masks))
                table, images = _evaluate(config, edited, clf)
                del edited
            score, target_acc, retention = cad.edit_score(edit, table, base_rows, concept_name)
            log.info("%s %s=%s: %d weights zeroed, target acc %.2f, retention %.2f (%.1fs)", edit, point["rule"], value,
                     n_edited, target_acc, retention, time.time() - t0)  # fmt: skip
            table = table.assign(concept=concept_name, edit=edit, rule=point["rule"],
                                 rho=float(point["rho"]) if point["rule"] == "per_row" else n_edited / n_sel,
                                 k=int(point["k"]) if point["rule"] == "global" else -1, sweep_index=i,
                                 n_edited=n_edited, n_selected=n_sel, score=score, retention=retention)  # fmt: skip
            rows.append(table)
            if n_edited > 0 and (best is None or score > best[0]):
                best = (score, i, images)
        sel = best[1] if best else -1
        for t in rows:
            if t["edit"].iloc[0] == edit:
                t["selected"] = bool(t["sweep_index"].iloc[0] == sel)
        if best is not None:
            arrays[f"samples/{edit}"] = _grid_images(best[2], n_grid)
    none = base_rows.assign(concept=concept_name, edit="none", rule="none", rho=0.0, k=0, sweep_index=-1, n_edited=0,
                            n_selected=n_sel, score=0.0, retention=1.0, selected=True)  # fmt: skip
    editing = pd.concat([none] + rows, ignore_index=True)
    editing["is_target"] = editing["eval_class"] == concept_name
    first = cad.EDITING_COLUMNS + ["rule", "k"]
    editing = editing[first + [c for c in editing.columns if c not in first]]

    meta = provenance(config, device)
    write_parquet(pd.concat(frames, ignore_index=True), out_attribution, meta)
    write_parquet(editing, out_editing, meta)
    cf_cols = ["concept", "objective", "parameter", "flat_index", "group", "weight", "attribution", "predicted_delta",
               "actual_delta", "actual_delta_full", "n_items", "pearson", "spearman", "pearson_random", "spearman_random"]  # fmt: skip
    write_parquet(pd.concat(cf_frames, ignore_index=True) if cf_frames else pd.DataFrame(columns=cf_cols), out_counterfactual, meta)
    save_arrays(out_arrays, arrays, {"concept": concept_name, "classes": [c["name"] for c in eval_classes(config)],
                                     "layout": "attributions: '<objective>/<parameter>' (parameter shape); "
                                               "samples/<edit>: uint8 (n_classes, n, C, H, W) of the selected edit"})  # fmt: skip


def components_aggregate(config: dict, attribution: list[str], editing: list[str], counterfactual: list[str],
                         out_attribution: str, out_editing: str, out_counterfactual: str) -> None:  # fmt: skip
    aggregate_tables(config, resolve_device(config["device"]),
                     {out_attribution: attribution, out_editing: editing, out_counterfactual: counterfactual})  # fmt: skip


def components_plot(config: dict, attribution: str, editing: str, counterfactual: str, baseline_samples: str,
                    concept_arrays: list[str], out_mass: str, out_editing: str, out_scatter: str, out_grid: str) -> None:  # fmt: skip
    from diffxai.plots import components as pc

    dpi = config["plots"]["dpi"]
    names = [c["name"] for c in eval_classes(config)]
    pc.attribution_mass(pd.read_parquet(attribution), out_mass, dpi=dpi)
    pc.editing_bars(pd.read_parquet(editing), names, out_editing, dpi=dpi)
    pc.counterfactual_scatter(pd.read_parquet(counterfactual), out_scatter, dpi=dpi)
    base, _ = load_arrays(baseline_samples)
    per_concept = []
    for p in concept_arrays:
        arrays, meta = load_arrays(p)
        per_concept.append((meta["concept"], {e: arrays[f"samples/{e}"] for e in EDITS if f"samples/{e}" in arrays}))
    pc.sample_grids(base["none"], per_concept, names, out_grid, dpi=dpi)
