from diffxai.config.experiment import commitment_pairs, pair_id, stage_classes

SCHEDULES = [s["name"] for s in config["schedules"]["schedules"]]
COMMIT_PAIRS = {pair_id(a, b): [a, b] for a, b in commitment_pairs(config)}
SCHEDULE_SAMPLES = expand(
    f"{R}/samples/schedules/{{schedule}}.safetensors", schedule=SCHEDULES
)
SCHEDULE_CODE = get_code_hash(
    "schedules",
    "pipeline_schedules",
    "sampling",
    "models",
    "likelihood",
    "sd",
    "pipeline",
    "tables",
)


wildcard_constraints:
    schedule="|".join(SCHEDULES),
    pair="|".join(COMMIT_PAIRS) if COMMIT_PAIRS else "^$",


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
    threads: 1
    resources:
        gpu=stage_resources("schedules")["gpu"],
        mem_mb=stage_mem_mb("schedules"),
        runtime=stage_runtime("schedules"),
    params:
        schedule=lambda wc: next(
            s for s in config["schedules"]["schedules"] if s["name"] == wc.schedule
        ),
        n_seeds=config["schedules"]["n_seeds"],
        guidance=config["schedules"]["guidance"],
        sampler=config["schedules"]["sampler"],
        sd=config["schedules"]["sd"],
        classes=stage_classes(config),
        diffusion=config["models"]["diffusion"],
        classifier=config["models"]["classifier"],
        seed=config["seed"],
        code=SCHEDULE_CODE,
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
    threads: 1
    resources:
        gpu=stage_resources("schedules")["gpu"],
        mem_mb=stage_mem_mb("schedules"),
        runtime=stage_runtime("schedules"),
    params:
        pair=lambda wc: COMMIT_PAIRS[wc.pair],
        commitment=config["schedules"]["commitment"],
        schedules=config["schedules"]["schedules"],
        n_seeds=config["schedules"]["n_seeds"],
        guidance=config["schedules"]["guidance"],
        sampler=config["schedules"]["sampler"],
        classes=stage_classes(config),
        diffusion=config["models"]["diffusion"],
        classifier=config["models"]["classifier"],
        seed=config["seed"],
        code=SCHEDULE_CODE,
    script:
        "../scripts/schedules_commitment.py"


rule schedules_aggregate:
    input:
        tables=expand(f"{R}/schedules/{{schedule}}.parquet", schedule=SCHEDULES),
        steps=expand(f"{R}/schedules/{{schedule}}_steps.parquet", schedule=SCHEDULES),
        samples=SCHEDULE_SAMPLES,
        commitment=expand(
            f"{R}/schedules/commitment/{{pair}}.parquet", pair=list(COMMIT_PAIRS)
        ),
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
        lowpass_sigma=config["schedules"]["lowpass_sigma"],
        code=get_code_hash("schedules", "pipeline_schedules", "tables"),
    script:
        "../scripts/schedules_aggregate.py"


rule schedules_plot:
    input:
        sampling=f"{R}/tables/schedule_sampling.parquet",
        steps=f"{R}/tables/schedule_steps.parquet",
        distances=f"{R}/tables/schedule_distances.parquet",
        commitment=f"{R}/tables/commitment.parquet",
        commitment_summary=f"{R}/tables/commitment_summary.parquet",
        samples=SCHEDULE_SAMPLES,
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
        plots=config["plots"],
        plot_seeds=config["schedules"]["plot_seeds"],
        code=get_code_hash("plots", "plots_schedules", "pipeline_schedules"),
    script:
        "../scripts/schedules_plot.py"


if "schedules" in config["stages"]:
    FINAL_OUTPUTS.extend(
        [
            f"{R}/tables/schedule_sampling.parquet",
            f"{R}/tables/schedule_steps.parquet",
            f"{R}/tables/schedule_distances.parquet",
            f"{R}/tables/commitment.parquet",
            f"{R}/tables/commitment_summary.parquet",
            f"{R}/plots/schedule_grid.png",
            f"{R}/plots/schedule_class_prob.png",
            f"{R}/plots/schedule_distances.png",
            f"{R}/plots/commitment.png",
        ]
    )
