"""The config reference (``config/README.md``'s key table), generated from the schema.

``python -m diffxai.config.reference > config/README.md`` rewrites it; a test checks the committed
file is up to date, so the reference never drifts from what the checks accept.
"""

from __future__ import annotations

import json

from diffxai.config.load import load_schema

INTRO = """# Configuration

An experiment is one YAML file: `config/config.yaml` is the embedded demo (trains its own models
offline, every stage, under 10 minutes on 2 cores); `config/imagenet_cats.yaml` is the KCC 2024
poster's experiment (ResNet-18, `google/ddpm-cat-256`, ImageNet cat classes); `config/sd14.yaml`
is Stable Diffusion 1.4 (arXiv 2402.10404, arXiv 2412.02542). Run one with

```bash
.venv/bin/snakemake --cores all --configfile config/sd14.yaml
```

A `--configfile` *replaces* the demo config; every key it leaves out takes the default below.
`diffxai check CONFIG` runs every check without starting anything. Everything an experiment makes
goes to `results/<experiment>/`.

## What each section means

| section | what it sets |
|---|---|
| `experiment`, `seed`, `threads`, `device` | output folder name; the seed every random draw derives from; torch threads per job (fixed, so tables do not depend on `--cores`); `auto` = CUDA when present |
| `resources` | `gpu`, `mem_mb`, `runtime` of every network job (a stage's own `resources:` block overrides them) — execution only, never part of any job's settings |
| `stages` | which stages `rule all` runs |
| `models` | the diffusion model (`diffusion`: the demo, or a diffusers id / directory, `pixel` or `stable_diffusion`), whether it is class-conditional (`diffusion.conditional`), the classifier (`classifier`: demo, torchvision weights or a state dict, and its `preprocess`) and how the demo models are trained and evaluated |
| `data`, `classes` | where the real images come from (scikit-learn digits or a folder per class) and the classes / prompts explained (`index` = classifier output, `label` = the diffusion model's class label, `prompt` = text for text-conditioned models) |
| `noise`, `trajectories`, `likelihood` | the noise levels and draws of the trajectories, forward noising or real reverse sampling, the classifier's likelihood and critical interval window |
| `attribution` | Captum methods (any input-attribution class, with its arguments), steps, faithfulness and sanity checks |
| `saliency` | DF-RISE / DF-CAM on the denoiser: sampling, steps, masks, layers, deletion/insertion |
| `schedules` | generation under uniform / exponential time-step spacing, the label-switch commitment experiment |
| `components` | CAD component attribution: objective, parameter sets, erase / amplify sweep, evaluation, and the classifier that judges it when not `models.classifier` |
| `plots` | figure resolution and sizes |
| `explorer` | the timestep explorer page (`explorer/index.html`): how many images and draws it shows, their size and format |

## Reruns

Each rule receives exactly the settings its driver reads (see `docs/running.md`): changing a key
reruns the jobs that read it and what depends on their outputs, nothing else. Key order, comments
and `2` vs `2.0` for a number change nothing. `resources` and `stages` never rerun a job.

## Every key (generated from `src/diffxai/config/schema.yaml`)

| key | type | default | meaning |
|---|---|---|---|
"""


def _type(sub: dict) -> str:
    if "enum" in sub:
        return " \\| ".join(f"`{v if isinstance(v, str) else json.dumps(v)}`" for v in sub["enum"])
    if "oneOf" in sub:
        return " or ".join(_type(s) if "const" not in s else f"`{s['const']}`" for s in sub["oneOf"])
    t = sub.get("type", "")
    return " or ".join(t) if isinstance(t, list) else str(t)


def _object_type(sub: dict) -> str:
    """An object's type, with the alternatives it allows (a string pattern ``^x$`` shows as `x`)."""
    t = sub.get("type", "object")
    types = [t] if isinstance(t, str) else list(t)
    pattern = sub.get("pattern", "")
    const = f"`{pattern[1:-1]}`" if pattern.startswith("^") and pattern.endswith("$") else "string"
    return " or ".join(const if x == "string" else x for x in types)


def _rows(sub: dict, path: str, root: dict):
    if "$ref" in sub:  # a definition; the property's own default and description win
        sub = {**root["definitions"][sub["$ref"].split("/")[-1]], **{k: v for k, v in sub.items() if k != "$ref"}}
    props = sub.get("properties")
    types = sub.get("type")
    if props and "object" in ([types] if isinstance(types, str) else types or []) and path:
        desc = " ".join(str(sub.get("description", "")).split())
        default = " `null` " if "default" in sub and sub["default"] is None else " "
        if desc:
            yield f"| `{path}` | {_object_type(sub)} |{default}| {desc} |"
    if props:
        for k, s in props.items():
            yield from _rows(s, f"{path}.{k}" if path else k, root)
        return
    items = sub.get("items")
    if isinstance(items, dict) and items.get("properties"):
        yield f"| `{path}` | list | | {sub.get('description', '')} |"
        yield from _rows(items, f"{path}[]", root)
        return
    default = sub.get("default", "")
    default = "" if default == "" else f"`{json.dumps(default)}`"
    desc = " ".join(str(sub.get("description", "")).split())
    yield f"| `{path}` | {_type(sub)} | {default} | {desc} |"


def reference() -> str:
    schema = load_schema()
    return INTRO + "\n".join(_rows(schema, "", schema)) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
