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
    threads: get_threads("likelihood_compute")
    resources:
        gpu=stage_resources("likelihood")["gpu"],
        mem_mb=stage_mem_mb("likelihood"),
        runtime=stage_runtime("likelihood"),
    params:
        settings=get_settings("likelihood_compute"),
        execution=get_execution("likelihood_compute"),
        code=get_code("likelihood_compute"),
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
        settings=get_settings("likelihood_aggregate"),
        execution=get_execution("likelihood_aggregate"),
        code=get_code("likelihood_aggregate"),
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
        settings=get_settings("likelihood_plot"),
        execution=get_execution("likelihood_plot"),
        code=get_code("likelihood_plot"),
    script:
        "../scripts/likelihood_plot.py"
