rule models_train_ddpm:
    output:
        directory(f"{R}/models/ddpm"),
    log:
        f"{R}/logs/models_train_ddpm.log",
    benchmark:
        f"{R}/benchmarks/models_train_ddpm.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: config["models"]["threads"]
    resources:
        gpu=stage_resources("models")["gpu"],
        mem_mb=stage_mem_mb("models"),
        runtime=stage_runtime("models"),
    params:
        diffusion=config["models"]["diffusion"],
        data=config["data"],
        seed=config["seed"],
        code=get_code_hash("models", "data", "seeding", "pipeline"),
        torch_threads=config["models"]["threads"],
    script:
        "../scripts/models_train_ddpm.py"


rule models_train_classifier:
    output:
        f"{R}/models/classifier.safetensors",
    log:
        f"{R}/logs/models_train_classifier.log",
    benchmark:
        f"{R}/benchmarks/models_train_classifier.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: 1
    resources:
        gpu=stage_resources("models")["gpu"],
        mem_mb=stage_mem_mb("models"),
        runtime=stage_runtime("models"),
    params:
        classifier=config["models"]["classifier"],
        data=config["data"],
        seed=config["seed"],
        code=get_code_hash("models", "data", "seeding", "pipeline"),
    script:
        "../scripts/models_train_classifier.py"


rule models_evaluate:
    input:
        ddpm=get_ddpm,
        classifier=get_classifier,
    output:
        table=f"{R}/tables/models.parquet",
        plot=report(
            f"{R}/plots/model_samples.png",
            caption="../report/model_samples.rst",
            category="Models",
        ),
    log:
        f"{R}/logs/models_evaluate.log",
    benchmark:
        f"{R}/benchmarks/models_evaluate.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: config["models"]["threads"]
    resources:
        gpu=stage_resources("models")["gpu"],
        mem_mb=stage_mem_mb("models"),
        runtime=stage_runtime("models"),
    params:
        models=config["models"],
        classes=config["classes"],
        data=config["data"],
        seed=config["seed"],
        code=get_code_hash("models", "sampling", "data", "pipeline", "plots", "tables"),
        torch_threads=config["models"]["threads"],
    script:
        "../scripts/models_evaluate.py"


if "models" in config["stages"]:
    FINAL_OUTPUTS.extend([f"{R}/tables/models.parquet", f"{R}/plots/model_samples.png"])
