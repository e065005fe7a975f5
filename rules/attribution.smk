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
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("attribution_compute")
    resources:
        gpu=stage_resources("attribution")["gpu"],
        mem_mb=stage_mem_mb("attribution"),
        runtime=stage_runtime("attribution"),
    params:
        settings=get_settings("attribution_compute"),
        execution=get_execution("attribution_compute"),
        code=get_code("attribution_compute"),
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
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("attribution_sanity")
    resources:
        gpu=stage_resources("attribution")["gpu"],
        mem_mb=stage_mem_mb("attribution"),
        runtime=stage_runtime("attribution"),
    params:
        settings=get_settings("attribution_sanity"),
        execution=get_execution("attribution_sanity"),
        code=get_code("attribution_sanity"),
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
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("attribution_aggregate"),
        execution=get_execution("attribution_aggregate"),
        code=get_code("attribution_aggregate"),
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
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("attribution_plot_maps"),
        execution=get_execution("attribution_plot_maps"),
        code=get_code("attribution_plot_maps"),
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
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("attribution_plot"),
        execution=get_execution("attribution_plot"),
        code=get_code("attribution_plot"),
    script:
        "../scripts/attribution_plot.py"
