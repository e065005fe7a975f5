import os
import sys
from pathlib import Path

# The library lives in src/; make it importable here and in every script's process.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)

from diffxai.config import validate_config
from diffxai.errors import DiffxaiError
from diffxai.tables import source_hash

try:
    validate_config(config)
except DiffxaiError as exc:
    sys.stderr.write(f"diffxai config error: {exc}\n")
    sys.exit(1)

R = f"results/{config['experiment']}"
CLASSES = [c["name"] for c in config["classes"]]
DEMO_DDPM = config["models"]["diffusion"]["source"] == "demo"
DEMO_CLASSIFIER = config["models"]["classifier"]["source"] == "demo"


wildcard_constraints:
    cls="|".join(CLASSES),


def stage_resources(stage):
    """gpu / mem_mb / runtime for a network rule: the stage's own block overrides the global one."""
    res = dict(config["resources"])
    res.update(config.get(stage, {}).get("resources") or {})
    return res


def get_ddpm(wildcards=None):
    """The demo DDPM directory built by the DAG; nothing for a pretrained id/path."""
    return f"{R}/models/ddpm" if DEMO_DDPM else []


def get_classifier(wildcards=None):
    return f"{R}/models/classifier.safetensors" if DEMO_CLASSIFIER else []


def get_class_images(wildcards):
    """Real images of a class folder, so that editing a photo reruns its class."""
    if config["data"]["source"] != "folder":
        return []
    from diffxai.config import class_folder
    from diffxai.data import list_images
    from diffxai.pipeline import class_spec

    cls = class_spec(config, wildcards.cls)
    return [str(p) for p in list_images(class_folder(config, cls))[: config["data"]["n_images"]]]


def get_trajectories(wildcards=None):
    return expand(f"{R}/trajectories/{{cls}}.safetensors", cls=CLASSES)


def get_likelihoods(wildcards=None):
    return expand(f"{R}/likelihood/{{cls}}.parquet", cls=CLASSES)


def get_code_hash(*modules):
    """A param that changes when the library code a rule runs changes (Snakemake tracks only scripts)."""
    return source_hash(*modules)


# Every stage's .smk appends the targets of `rule all` to this list.
FINAL_OUTPUTS = []


def get_final_outputs():
    return FINAL_OUTPUTS
