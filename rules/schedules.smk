rule schedules_generate:
    input:
        ddpm=get_ddpm,
        classifier=get_classifier,
    output:
        samples=f"{R}/samples/schedules/{{schedule}}.safetensors",
        table=f"{R}/schedules/{{schedule}}.parquet",
        steps=f"{R}/schedules/{{schedule}}_steps.parquet",
    log:
        f"{R}/logs/schedules_generate/{{schedule}}.log",
    benchmark:
        f"{R}/benchmarks/schedules_generate/{{schedule}}.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("schedules_generate")
    resources:
        gpu=stage_resources("schedules")["gpu"],
        mem_mb=stage_mem_mb("schedules"),
        runtime=stage_runtime("schedules"),
    params:
        settings=get_settings("schedules_generate"),
        execution=get_execution("schedules_generate"),
        code=get_code("schedules_generate"),
    script:
        "../scripts/schedules_generate.py"


rule schedules_commitment:
    input:
        ddpm=get_ddpm,
        classifier=get_classifier,
    output:
        f"{R}/schedules/commitment/{{pair}}.parquet",
    log:
        f"{R}/logs/schedules_commitment/{{pair}}.log",
    benchmark:
        f"{R}/benchmarks/schedules_commitment/{{pair}}.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("schedules_commitment")
    resources:
        gpu=stage_resources("schedules")["gpu"],
        mem_mb=stage_mem_mb("schedules"),
        runtime=stage_runtime("schedules"),
    params:
        settings=get_settings("schedules_commitment"),
        execution=get_execution("schedules_commitment"),
        code=get_code("schedules_commitment"),
    script:
        "../scripts/schedules_commitment.py"


rule schedules_aggregate:
    input:
        tables=get_schedule_tables(""),
        steps=get_schedule_tables("_steps"),
        samples=get_schedule_samples,
        commitment=get_commitment_tables,
    output:
        sampling=f"{R}/tables/schedule_sampling.parquet",
        steps=f"{R}/tables/schedule_steps.parquet",
        distances=f"{R}/tables/schedule_distances.parquet",
        commitment=f"{R}/tables/commitment.parquet",
        commitment_summary=f"{R}/tables/commitment_summary.parquet",
    log:
        f"{R}/logs/schedules_aggregate.log",
    benchmark:
        f"{R}/benchmarks/schedules_aggregate.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("schedules_aggregate"),
        execution=get_execution("schedules_aggregate"),
        code=get_code("schedules_aggregate"),
    script:
        "../scripts/schedules_aggregate.py"


rule schedules_plot:
    input:
        sampling=f"{R}/tables/schedule_sampling.parquet",
        steps=f"{R}/tables/schedule_steps.parquet",
        distances=f"{R}/tables/schedule_distances.parquet",
        commitment=f"{R}/tables/commitment.parquet",
        commitment_summary=f"{R}/tables/commitment_summary.parquet",
        samples=get_schedule_samples,
    output:
        grid=report(
            f"{R}/plots/schedule_grid.png",
            caption="../report/schedule_grid.rst",
            category="Time-step schedules",
        ),
        prob=report(
            f"{R}/plots/schedule_class_prob.png",
            caption="../report/schedule_class_prob.rst",
            category="Time-step schedules",
        ),
        distances=report(
            f"{R}/plots/schedule_distances.png",
            caption="../report/schedule_distances.rst",
            category="Time-step schedules",
        ),
        commitment=report(
            f"{R}/plots/commitment.png",
            caption="../report/commitment.rst",
            category="Time-step schedules",
        ),
    log:
        f"{R}/logs/schedules_plot.log",
    benchmark:
        f"{R}/benchmarks/schedules_plot.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("schedules_plot"),
        execution=get_execution("schedules_plot"),
        code=get_code("schedules_plot"),
    script:
        "../scripts/schedules_plot.py"
