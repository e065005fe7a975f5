from snakemake.exceptions import WorkflowError

# rules/config.smk (included first) put src/ on the path.
from diffxai.config.checks import check_config
from diffxai.io.tables import source_hash

# Schema, defaults and every stage's checks, before any job is planned.
or_exit(check_config, config)

R = f"results/{config['experiment']}"
CLASSES = [c["name"] for c in config["classes"]]
DEMO_DDPM = config["models"]["diffusion"]["source"] == "demo"
DEMO_CLASSIFIER = config["models"]["classifier"]["source"] == "demo"


wildcard_constraints:
    cls="|".join(CLASSES),


def stage_resources(stage):
    """The gpu, mem_mb and runtime of a stage's network jobs (the stage's block overrides the global one)."""
    res = dict(config["resources"])
    res.update(config.get(stage, {}).get("resources") or {})
    return res


def all_cores(fallback=4):
    """Threads of jobs that use the whole machine (the demo trainers): --cores when given, else
    `fallback` (--report, --lint, cluster runs; the slurm profile's max-threads caps it).
    """
    try:
        return workflow.cores
    except WorkflowError:
        return fallback


def stage_mem_mb(stage):
    """A stage's mem_mb times the attempt, so a job retried with --retries gets more memory."""
    base = stage_resources(stage)["mem_mb"]
    return lambda wildcards, attempt: base * attempt


def stage_runtime(stage):
    """A stage's runtime (minutes) times the attempt, so a job killed at its time limit gets longer."""
    base = stage_resources(stage)["runtime"]
    return lambda wildcards, attempt: base * attempt


def get_ddpm(wildcards=None):
    """The demo DDPM directory built by the DAG; nothing for a pretrained id/path."""
    return f"{R}/models/ddpm" if DEMO_DDPM else []


def get_classifier(wildcards=None):
    return f"{R}/models/classifier.safetensors" if DEMO_CLASSIFIER else []


def get_class_images(wildcards):
    """Real images of a class folder, so that editing a photo reruns its class."""
    if config["data"]["source"] != "folder":
        return []
    from diffxai.config.experiment import class_folder
    from diffxai.io.images import list_images
    from diffxai.config.experiment import class_spec

    cls = class_spec(config, wildcards.cls)
    return [
        str(p)
        for p in list_images(class_folder(config, cls))[: config["data"]["n_images"]]
    ]


def get_trajectories(wildcards=None):
    return expand(f"{R}/trajectories/{{cls}}.safetensors", cls=CLASSES)


def get_likelihoods(wildcards=None):
    return expand(f"{R}/likelihood/{{cls}}.parquet", cls=CLASSES)


def get_code_hash(*modules):
    """A param that changes when the library code a rule runs changes (Snakemake tracks only scripts)."""
    return source_hash(*modules)


# Every stage's .smk appends the targets of `rule all` to this list.
FINAL_OUTPUTS = []


def get_report_tables(wildcards=None):
    """Every table the workflow builds (as a target of all); the report shows each as a page."""
    return [
        p
        for p in FINAL_OUTPUTS
        if p.startswith(f"{R}/tables/") and p.endswith(".parquet")
    ]


def get_final_outputs():
    """Targets of the default rule: every stage's outputs, plus the report's table pages."""
    return FINAL_OUTPUTS + ([f"{R}/report/tables"] if get_report_tables() else [])


# --- attribution (rules/attribution.smk) ---
ATTR_METHODS = list(config["attribution"]["methods"])
ATTR_CODE = (
    "attribution",
    "evaluation",
    "pipeline_attribution",
    "models",
    "batching",
    "seeding",
    "tables",
)
ATTR_PLOT_CODE = ("plots_attribution", "plots", "pipeline_attribution", "tables")
ATTR_SELECTION = {
    k: config["attribution"][k]
    for k in ("steps", "max_images", "draws", "views", "output", "store_dtype")
}


def get_attribution_method(wildcards):
    return config["attribution"]["methods"][wildcards.method]


def get_attribution_jobs(kind):
    def inner(wildcards=None):
        return [
            f"{R}/attribution/{m}/{c}.{kind}.parquet"
            for m in ATTR_METHODS
            for c in CLASSES
        ]

    return inner


def get_attribution_maps(wildcards=None):
    return [
        f"{R}/maps/attribution/{m}/{c}.safetensors"
        for m in ATTR_METHODS
        for c in CLASSES
    ]


def attribution_grid_plot(method, cls):
    path = f"{R}/plots/attribution/{method}/{cls}.png"
    return report(
        path,
        caption="../report/attribution_maps.rst",
        category="Attribution",
        subcategory=f"maps: {method}",
        labels={"method": method, "class": cls},
    )


def attribution_grid_plots():
    return [attribution_grid_plot(m, c) for m in ATTR_METHODS for c in CLASSES]


def attribution_stats_plot(view):
    path = f"{R}/plots/attribution_stats_{view}.png"
    return report(
        path,
        caption="../report/attribution_stats.rst",
        category="Attribution",
        subcategory="statistics",
        labels={"view": view},
    )


def attribution_stats_plots():
    views = config["attribution"]["views"] or config["trajectories"]["views"]
    return {v: attribution_stats_plot(v) for v in views}
