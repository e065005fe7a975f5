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
    threads: get_threads("saliency_compute")
    resources:
        gpu=stage_resources("saliency")["gpu"],
        mem_mb=stage_mem_mb("saliency"),
        runtime=stage_runtime("saliency"),
    params:
        settings=get_settings("saliency_compute"),
        execution=get_execution("saliency_compute"),
        code=get_code("saliency_compute"),
    script:
        "../scripts/saliency_compute.py"


rule saliency_aggregate:
    input:
        get_saliency_tables,
    output:
        f"{R}/tables/saliency_stats.parquet",
    log:
        f"{R}/logs/saliency_aggregate.log",
    benchmark:
        f"{R}/benchmarks/saliency_aggregate.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("saliency_aggregate"),
        execution=get_execution("saliency_aggregate"),
        code=get_code("saliency_aggregate"),
    script:
        "../scripts/saliency_aggregate.py"


rule saliency_plot:
    input:
        table=f"{R}/tables/saliency_stats.parquet",
        maps=get_saliency_maps,
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
        settings=get_settings("saliency_plot"),
        execution=get_execution("saliency_plot"),
        code=get_code("saliency_plot"),
    script:
        "../scripts/saliency_plot.py"
