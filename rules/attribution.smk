from diffxai.pipeline_attribution import check_attribution_config

try:
    check_attribution_config(config)
except DiffxaiError as exc:
    sys.stderr.write(f"diffxai config error: {exc}\n")
    sys.exit(1)

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


rule attribution_compute:
    input:
        trajectories=f"{R}/trajectories/{{cls}}.safetensors",
        classifier=get_classifier,
    output:
        maps=f"{R}/maps/attribution/{{method}}/{{cls}}.safetensors",
        stats=f"{R}/attribution/{{method}}/{{cls}}.stats.parquet",
        faithfulness=f"{R}/attribution/{{method}}/{{cls}}.faithfulness.parquet",
    log:
        f"{R}/logs/attribution_compute/{{method}}/{{cls}}.log",
    benchmark:
        f"{R}/benchmarks/attribution_compute/{{method}}/{{cls}}.tsv"
    wildcard_constraints:
        method="|".join(ATTR_METHODS),
    threads: 1
    resources:
        gpu=stage_resources("attribution")["gpu"],
        mem_mb=stage_resources("attribution")["mem_mb"],
        runtime=stage_resources("attribution")["runtime"],
    params:
        method=get_attribution_method,
        selection=ATTR_SELECTION,
        faithfulness=config["attribution"]["faithfulness"],
        classifier=config["models"]["classifier"],
        seed=config["seed"],
        code=get_code_hash(*ATTR_CODE),
    script:
        "../scripts/attribution_compute.py"


rule attribution_sanity:
    input:
        trajectories=get_trajectories,
        classifier=get_classifier,
    output:
        f"{R}/attribution/sanity/{{method}}.parquet",
    log:
        f"{R}/logs/attribution_sanity/{{method}}.log",
    benchmark:
        f"{R}/benchmarks/attribution_sanity/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(ATTR_METHODS),
    threads: 1
    resources:
        gpu=stage_resources("attribution")["gpu"],
        mem_mb=stage_resources("attribution")["mem_mb"],
        runtime=stage_resources("attribution")["runtime"],
    params:
        method=get_attribution_method,
        sanity=config["attribution"]["sanity"],
        output=config["attribution"]["output"],
        classifier=config["models"]["classifier"],
        seed=config["seed"],
        code=get_code_hash(*ATTR_CODE),
    script:
        "../scripts/attribution_sanity.py"


rule attribution_aggregate:
    input:
        stats=get_attribution_jobs("stats"),
        faithfulness=get_attribution_jobs("faithfulness"),
        sanity=expand(f"{R}/attribution/sanity/{{method}}.parquet", method=ATTR_METHODS),
    output:
        stats=f"{R}/tables/attribution_stats.parquet",
        faithfulness=f"{R}/tables/faithfulness.parquet",
        sanity=f"{R}/tables/sanity.parquet",
    log:
        f"{R}/logs/attribution_aggregate.log",
    benchmark:
        f"{R}/benchmarks/attribution_aggregate.tsv"
    params:
        code=get_code_hash("pipeline_attribution", "tables"),
    script:
        "../scripts/attribution_aggregate.py"


rule attribution_plot_maps:
    input:
        maps=get_attribution_maps,
        trajectories=get_trajectories,
    output:
        attribution_grid_plots(),
    log:
        f"{R}/logs/attribution_plot_maps.log",
    benchmark:
        f"{R}/benchmarks/attribution_plot_maps.tsv"
    params:
        selection=ATTR_SELECTION,
        plot_images=config["attribution"]["plot_images"],
        plots=config["plots"],
        code=get_code_hash(*ATTR_PLOT_CODE),
    script:
        "../scripts/attribution_plot_maps.py"


rule attribution_plot:
    input:
        stats=f"{R}/tables/attribution_stats.parquet",
        faithfulness=f"{R}/tables/faithfulness.parquet",
        sanity=f"{R}/tables/sanity.parquet",
        intervals=f"{R}/tables/critical_intervals.parquet",
    output:
        **{f"stats_{v}": p for v, p in attribution_stats_plots().items()},
        classes=report(
            f"{R}/plots/attribution_classes.png",
            caption="../report/attribution_classes.rst",
            category="Attribution",
            subcategory="statistics",
        ),
        faithfulness=report(
            f"{R}/plots/attribution_faithfulness.png",
            caption="../report/attribution_faithfulness.rst",
            category="Attribution",
            subcategory="checks",
        ),
        sanity=report(
            f"{R}/plots/attribution_sanity.png",
            caption="../report/attribution_sanity.rst",
            category="Attribution",
            subcategory="checks",
        ),
    log:
        f"{R}/logs/attribution_plot.log",
    benchmark:
        f"{R}/benchmarks/attribution_plot.tsv"
    params:
        plots=config["plots"],
        code=get_code_hash(*ATTR_PLOT_CODE),
    script:
        "../scripts/attribution_plot.py"


if "attribution" in config["stages"]:
    FINAL_OUTPUTS.extend(
        [
            f"{R}/tables/attribution_stats.parquet",
            f"{R}/tables/faithfulness.parquet",
            f"{R}/tables/sanity.parquet",
            f"{R}/plots/attribution_classes.png",
            f"{R}/plots/attribution_faithfulness.png",
            f"{R}/plots/attribution_sanity.png",
            *[str(p) for p in attribution_stats_plots().values()],
            *[str(p) for p in attribution_grid_plots()],
        ]
    )
