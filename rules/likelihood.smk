rule likelihood_compute:
    input:
        trajectories=f"{R}/trajectories/{{cls}}.safetensors",
        classifier=get_classifier,
    output:
        f"{R}/likelihood/{{cls}}.parquet",
    params:
        classifier=config["models"]["classifier"],
        code=get_code_hash("likelihood", "models", "batching", "pipeline", "tables"),
    log:
        f"{R}/logs/likelihood_compute/{{cls}}.log",
    benchmark:
        f"{R}/benchmarks/likelihood_compute/{{cls}}.tsv"
    threads: 1
    resources:
        gpu=stage_resources("likelihood")["gpu"],
        mem_mb=stage_resources("likelihood")["mem_mb"],
        runtime=stage_resources("likelihood")["runtime"],
    script:
        "../scripts/likelihood_compute.py"


rule likelihood_aggregate:
    input:
        get_likelihoods,
    output:
        likelihood=f"{R}/tables/likelihood.parquet",
        intervals=f"{R}/tables/critical_intervals.parquet",
    params:
        window=config["likelihood"]["window"],
        code=get_code_hash("likelihood", "tables", "pipeline"),
    log:
        f"{R}/logs/likelihood_aggregate.log",
    benchmark:
        f"{R}/benchmarks/likelihood_aggregate.tsv"
    script:
        "../scripts/likelihood_aggregate.py"


rule likelihood_plot:
    input:
        likelihood=f"{R}/tables/likelihood.parquet",
        intervals=f"{R}/tables/critical_intervals.parquet",
    output:
        by_view=f"{R}/plots/likelihood_by_view.png",
        by_class=f"{R}/plots/likelihood_by_class.png",
    params:
        plots=config["plots"],
        code=get_code_hash("plots", "pipeline"),
    log:
        f"{R}/logs/likelihood_plot.log",
    benchmark:
        f"{R}/benchmarks/likelihood_plot.tsv"
    script:
        "../scripts/likelihood_plot.py"


if "likelihood" in config["stages"]:
    FINAL_OUTPUTS.extend(
        [
            f"{R}/tables/likelihood.parquet",
            f"{R}/tables/critical_intervals.parquet",
            f"{R}/plots/likelihood_by_view.png",
            f"{R}/plots/likelihood_by_class.png",
        ]
    )
