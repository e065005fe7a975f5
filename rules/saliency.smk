from diffxai.config.experiment import saliency_classes

SALIENCY_METHODS = config["saliency"]["methods"]
SALIENCY_CLASSES = saliency_classes(config)
SALIENCY_CODE = ("saliency", "pipeline_saliency", "evaluation", "models", "sampling", "sd", "noising", "seeding",
                 "batching", "pipeline", "tables")  # fmt: skip


wildcard_constraints:
    saliency="|".join(SALIENCY_METHODS),


# The saliency settings that affect results (batch sizes and resources left out).
SALIENCY_PARAMS = {
    k: v
    for k, v in config["saliency"].items()
    if k not in ("resources", "classes", "methods")
}
SALIENCY_PARAMS["rise"] = {
    k: v for k, v in SALIENCY_PARAMS["rise"].items() if k != "batch_size"
}
SALIENCY_PARAMS["evaluation"] = {
    k: v for k, v in SALIENCY_PARAMS["evaluation"].items() if k != "batch_size"
}
SALIENCY_MAPS = expand(
    f"{R}/maps/saliency/{{saliency}}/{{cls}}.safetensors",
    saliency=SALIENCY_METHODS,
    cls=SALIENCY_CLASSES,
)
SALIENCY_TABLES = expand(
    f"{R}/saliency/{{saliency}}/{{cls}}.parquet",
    saliency=SALIENCY_METHODS,
    cls=SALIENCY_CLASSES,
)


rule saliency_compute:
    input:
        ddpm=get_ddpm,
    output:
        maps=f"{R}/maps/saliency/{{saliency}}/{{cls}}.safetensors",
        table=f"{R}/saliency/{{saliency}}/{{cls}}.parquet",
    log:
        f"{R}/logs/saliency_compute/{{saliency}}/{{cls}}.log",
    benchmark:
        f"{R}/benchmarks/saliency_compute/{{saliency}}/{{cls}}.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: 1
    resources:
        gpu=stage_resources("saliency")["gpu"],
        mem_mb=stage_mem_mb("saliency"),
        runtime=stage_runtime("saliency"),
    params:
        saliency=SALIENCY_PARAMS,
        diffusion=config["models"]["diffusion"],
        cls=lambda wc: next(c for c in config["classes"] if c["name"] == wc.cls),
        seed=config["seed"],
        code=get_code_hash(*SALIENCY_CODE),
    script:
        "../scripts/saliency_compute.py"


rule saliency_aggregate:
    input:
        SALIENCY_TABLES,
    output:
        f"{R}/tables/saliency_stats.parquet",
    log:
        f"{R}/logs/saliency_aggregate.log",
    benchmark:
        f"{R}/benchmarks/saliency_aggregate.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        code=get_code_hash("pipeline_saliency", "tables"),
    script:
        "../scripts/saliency_aggregate.py"


rule saliency_plot:
    input:
        table=f"{R}/tables/saliency_stats.parquet",
        maps=SALIENCY_MAPS,
    output:
        overlays=report(
            f"{R}/plots/saliency_overlays.png",
            caption="../report/saliency_overlays.rst",
            category="Saliency (DF-RISE, DF-CAM)",
        ),
        layers=report(
            f"{R}/plots/saliency_dfcam_layers.png",
            caption="../report/saliency_dfcam_layers.rst",
            category="Saliency (DF-RISE, DF-CAM)",
        ),
        auc=report(
            f"{R}/plots/saliency_auc.png",
            caption="../report/saliency_auc.rst",
            category="Saliency (DF-RISE, DF-CAM)",
        ),
    log:
        f"{R}/logs/saliency_plot.log",
    benchmark:
        f"{R}/benchmarks/saliency_plot.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        plots=config["plots"],
        code=get_code_hash("plots_saliency", "pipeline_saliency", "plots"),
    script:
        "../scripts/saliency_plot.py"


if "saliency" in config["stages"]:
    FINAL_OUTPUTS.extend(
        [
            f"{R}/tables/saliency_stats.parquet",
            f"{R}/plots/saliency_overlays.png",
            f"{R}/plots/saliency_dfcam_layers.png",
            f"{R}/plots/saliency_auc.png",
        ]
    )
