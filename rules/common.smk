from pathlib import Path

# rules/config.smk (included first) put src/ on the path. Only torch-free layers are imported
# here: planning a run (`snakemake -n`, `--lint`, a bad config) never imports torch.
from diffxai.config.checks import check_config
from diffxai.config.experiment import commitment_pairs, pair_id, saliency_classes
from diffxai.core.codehash import SOURCE_HASH_ENV, code_hash, package_hash
from diffxai.workflow.params import rule_execution, rule_params, rule_threads

# Schema, defaults and every stage's checks, before any job is planned.
or_exit(check_config, config)

R = f"results/{config['experiment']}"
CLASSES = [c["name"] for c in config["classes"]]
DEMO_DDPM = config["models"]["diffusion"]["source"] == "demo"
DEMO_CLASSIFIER = config["models"]["classifier"]["source"] == "demo"
ATTR_METHODS = list(config["attribution"]["methods"])
SALIENCY_METHODS = list(config["saliency"]["methods"])
SALIENCY_CLASSES = saliency_classes(config)
SCHEDULES = [s["name"] for s in config["schedules"]["schedules"]]
COMMIT_PAIRS = {pair_id(a, b): [a, b] for a, b in commitment_pairs(config)}
COMPONENT_CONCEPTS = list(config["components"]["concepts"])


wildcard_constraints:
    cls="|".join(CLASSES),
    method="|".join(ATTR_METHODS),
    saliency="|".join(SALIENCY_METHODS),
    schedule="|".join(SCHEDULES),
    pair="|".join(COMMIT_PAIRS) if COMMIT_PAIRS else "^$",
    concept="|".join(COMPONENT_CONCEPTS) or "^$",


# --------------------------------------------------------------------------------------------
# settings, code trigger, threads and resources of a rule
# --------------------------------------------------------------------------------------------


def get_settings(rule):
    """The rule's params: exactly the settings its driver reads, canonical (diffxai.workflow.params)."""
    return lambda wildcards: rule_params(rule, config, wildcards)


def get_execution(rule):
    """The rule's batch sizes: given to the driver, never a rerun trigger (diffxai.workflow.params)."""
    return lambda wildcards: rule_execution(rule, config, wildcards)


def get_code(rule):
    """The rule's code trigger: the AST hash of its script's import closure in diffxai."""
    return code_hash(Path(workflow.basedir) / "scripts" / f"{rule}.py")


def get_threads(rule):
    """The rule's threads: the torch threads its jobs use (its settings' `threads`)."""
    return rule_threads(rule, config)


def stage_resources(stage):
    """The gpu, mem_mb and runtime of a stage's network jobs (the stage's block overrides the global one)."""
    res = dict(config["resources"])
    res.update(config.get(stage, {}).get("resources") or {})
    return res


def stage_mem_mb(stage):
    """A stage's mem_mb times the attempt, so a job retried with --retries gets more memory."""
    base = stage_resources(stage)["mem_mb"]
    return lambda wildcards, attempt: base * attempt


def stage_runtime(stage):
    """A stage's runtime (minutes) times the attempt, so a job killed at its time limit gets longer."""
    base = stage_resources(stage)["runtime"]
    return lambda wildcards, attempt: base * attempt


# --------------------------------------------------------------------------------------------
# models, trajectories, likelihood
# --------------------------------------------------------------------------------------------


def get_ddpm(wildcards=None):
    """The demo DDPM directory built by the DAG; nothing for a pretrained id/path."""
    return f"{R}/models/ddpm" if DEMO_DDPM else []


def get_classifier(wildcards=None):
    return f"{R}/models/classifier.safetensors" if DEMO_CLASSIFIER else []


def get_stage_classifier(stage):
    """The demo classifier for a stage that uses models.classifier; nothing when the stage
    names its own (components.classifier: a torchvision model or a state dict)."""
    own = config[stage].get("classifier")
    return (lambda wildcards=None: []) if own else get_classifier


def get_class_images(wildcards):
    """Real images of a class folder, so that editing a photo reruns its class."""
    if config["data"]["source"] != "folder":
        return []
    from diffxai.config.experiment import class_spec
    from diffxai.core.files import class_folder, list_images

    cls = class_spec(config, wildcards.cls)
    return [
        str(p)
        for p in list_images(class_folder(config, cls))[: config["data"]["n_images"]]
    ]


def get_trajectories(wildcards=None):
    return expand(f"{R}/trajectories/{{cls}}.safetensors", cls=CLASSES)


def get_likelihoods(wildcards=None):
    return expand(f"{R}/likelihood/{{cls}}.parquet", cls=CLASSES)


# --------------------------------------------------------------------------------------------
# attribution
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# saliency
# --------------------------------------------------------------------------------------------


def get_saliency_maps(wildcards=None):
    return expand(
        f"{R}/maps/saliency/{{saliency}}/{{cls}}.safetensors",
        saliency=SALIENCY_METHODS,
        cls=SALIENCY_CLASSES,
    )


def get_saliency_tables(wildcards=None):
    return expand(
        f"{R}/saliency/{{saliency}}/{{cls}}.parquet",
        saliency=SALIENCY_METHODS,
        cls=SALIENCY_CLASSES,
    )


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------


def get_schedule_samples(wildcards=None):
    return expand(f"{R}/samples/schedules/{{schedule}}.safetensors", schedule=SCHEDULES)


def get_schedule_tables(kind=""):
    def inner(wildcards=None):
        return expand(f"{R}/schedules/{{schedule}}{kind}.parquet", schedule=SCHEDULES)

    return inner


def get_commitment_tables(wildcards=None):
    return expand(f"{R}/schedules/commitment/{{pair}}.parquet", pair=list(COMMIT_PAIRS))


# --------------------------------------------------------------------------------------------
# components
# --------------------------------------------------------------------------------------------


def get_component_tables(kind):
    def inner(wildcards=None):
        return expand(
            f"{R}/components/{{concept}}/{kind}.parquet", concept=COMPONENT_CONCEPTS
        )

    return inner


def get_component_arrays(wildcards=None):
    return expand(
        f"{R}/components/{{concept}}/arrays.safetensors", concept=COMPONENT_CONCEPTS
    )


# --------------------------------------------------------------------------------------------
# the targets of `rule all`
# --------------------------------------------------------------------------------------------


def stage_targets(stage):
    """The final outputs of one stage (tables and plots)."""
    t = f"{R}/tables"
    p = f"{R}/plots"
    if stage == "models":
        return [f"{t}/models.parquet", f"{p}/model_samples.png"]
    if stage == "trajectories":
        return [f"{p}/trajectories.png"]
    if stage == "likelihood":
        return [
            f"{t}/likelihood.parquet",
            f"{t}/critical_intervals.parquet",
            f"{p}/likelihood_by_view.png",
            f"{p}/likelihood_by_class.png",
        ]
    if stage == "attribution":
        return [
            f"{t}/attribution_stats.parquet",
            f"{t}/faithfulness.parquet",
            f"{t}/sanity.parquet",
            f"{p}/attribution_classes.png",
            f"{p}/attribution_faithfulness.png",
            f"{p}/attribution_sanity.png",
            *[str(x) for x in attribution_stats_plots().values()],
            *[str(x) for x in attribution_grid_plots()],
        ]
    if stage == "saliency":
        return [
            f"{t}/saliency_stats.parquet",
            f"{p}/saliency_overlays.png",
            f"{p}/saliency_dfcam_layers.png",
            f"{p}/saliency_auc.png",
        ]
    if stage == "schedules":
        return [
            f"{t}/schedule_sampling.parquet",
            f"{t}/schedule_steps.parquet",
            f"{t}/schedule_distances.parquet",
            f"{t}/commitment.parquet",
            f"{t}/commitment_summary.parquet",
            f"{p}/schedule_grid.png",
            f"{p}/schedule_class_prob.png",
            f"{p}/schedule_distances.png",
            f"{p}/commitment.png",
        ]
    if stage == "components":
        if not COMPONENT_CONCEPTS:
            return []
        return [
            f"{t}/component_attribution.parquet",
            f"{t}/concept_editing.parquet",
            f"{t}/component_counterfactual.parquet",
            f"{p}/components_attribution_mass.png",
            f"{p}/components_editing.png",
            f"{p}/components_counterfactual.png",
            f"{p}/components_samples.png",
        ]
    raise ValueError(f"unknown stage {stage!r}")


def get_report_tables(wildcards=None):
    """Every table the run builds; the report shows each as a page."""
    return [
        x
        for s in config["stages"]
        for x in stage_targets(s)
        if x.startswith(f"{R}/tables/") and x.endswith(".parquet")
    ]


def get_explorer_inputs(wildcards=None):
    """What the explorer page shows: the arrays and tables of the stages `rule all` runs
    (a stage left out of `config.stages` leaves its panels out, and builds nothing)."""
    stages, t = set(config["stages"]), f"{R}/tables"
    inputs = {}
    if stages & {"trajectories", "likelihood", "attribution"}:
        inputs["trajectories"] = get_trajectories()
    if "likelihood" in stages:
        inputs["likelihood"] = f"{t}/likelihood.parquet"
        inputs["intervals"] = f"{t}/critical_intervals.parquet"
    if "attribution" in stages:
        inputs["attribution_maps"] = get_attribution_maps()
        inputs["faithfulness"] = f"{t}/faithfulness.parquet"
    if "saliency" in stages:
        inputs["saliency_maps"] = get_saliency_maps()
        inputs["saliency_stats"] = f"{t}/saliency_stats.parquet"
    if "schedules" in stages:
        inputs["schedule_samples"] = get_schedule_samples()
        inputs["schedule_sampling"] = f"{t}/schedule_sampling.parquet"
        inputs["schedule_steps"] = f"{t}/schedule_steps.parquet"
    if "components" in stages and COMPONENT_CONCEPTS:
        inputs["component_baseline"] = f"{R}/components/baseline_samples.safetensors"
        inputs["component_arrays"] = get_component_arrays()
        inputs["concept_editing"] = f"{t}/concept_editing.parquet"
    if "tokens" in stages:  # the token stage (issue 14): its table, when it lands
        inputs["token_relevance"] = f"{t}/token_relevance.parquet"
    return inputs


def get_final_output():
    """Targets of the default rule: every selected stage's outputs, plus the report's table pages
    and the explorer page."""
    targets = [x for s in config["stages"] for x in stage_targets(s)]
    targets += [f"{R}/report/tables"] if get_report_tables() else []
    return targets + ([f"{R}/explorer"] if get_explorer_inputs() else [])
