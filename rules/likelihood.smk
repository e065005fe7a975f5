rule likelihood_compute:
    input:
        trajectories=f"{R}/trajectories/{{cls}}.safetensors",
        classifier=get_classifier,
    output:
        f"{R}/likelihood/{{cls}}.parquet",
    log:
        f"{R}/logs/likelihood_compute/{{cls}}.log",
    benchmark:
        f"{R}/benchmarks/likelihood_compute/{{cls}}.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: 1
    resources:
        gpu=stage_resources("likelihood")["gpu"],
        mem_mb=stage_mem_mb("likelihood"),
        runtime=stage_runtime("likelihood"),
    params:
        classifier=config["models"]["classifier"],
        code=get_code_hash("likelihood", "models", "batching", "pipeline", "tables"),
    script:
        "../scripts/likelihood_compute.py"


rule likelihood_aggregate:
    input:
        get_likelihoods,
    output:
        likelihood=f"{R}/tables/likelihood.parquet",
        intervals=f"{R}/tables/critical_intervals.parquet",
    log:
        f"{R}/logs/likelihood_aggregate.log",
    benchmark:
        f"{R}/benchmarks/likelihood_aggregate.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        window=config["likelihood"]["window"],
        code=get_code_hash("likelihood", "tables", "pipeline"),
    script:
        "../scripts/likelihood_aggregate.py"


rule likelihood_plot:
    input:
        likelihood=f"{R}/tables/likelihood.parquet",
        intervals=f"{R}/tables/critical_intervals.parquet",
    output:
        by_view=report(
            f"{R}/plots/likelihood_by_view.png",
            caption="../report/likelihood_by_view.rst",
            category="Likelihood",
        ),
        by_class=report(
            f"{R}/plots/likelihood_by_class.png",
            caption="../report/likelihood_by_class.rst",
            category="Likelihood",
        ),
    log:
        f"{R}/logs/likelihood_plot.log",
    benchmark:
        f"{R}/benchmarks/likelihood_plot.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        plots=config["plots"],
        code=get_code_hash("plots", "pipeline"),
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
