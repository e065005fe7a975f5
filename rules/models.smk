rule models_train_ddpm:
    output:
        directory(f"{R}/models/ddpm"),
    log:
        f"{R}/logs/models_train_ddpm.log",
    benchmark:
        f"{R}/benchmarks/models_train_ddpm.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("models_train_ddpm")
    resources:
        gpu=stage_resources("models")["gpu"],
        mem_mb=stage_mem_mb("models"),
        runtime=stage_runtime("models"),
    params:
        settings=get_settings("models_train_ddpm"),
        execution=get_execution("models_train_ddpm"),
        code=get_code("models_train_ddpm"),
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
    threads: get_threads("models_train_classifier")
    resources:
        gpu=stage_resources("models")["gpu"],
        mem_mb=stage_mem_mb("models"),
        runtime=stage_runtime("models"),
    params:
        settings=get_settings("models_train_classifier"),
        execution=get_execution("models_train_classifier"),
        code=get_code("models_train_classifier"),
    script:
        "../scripts/models_train_classifier.py"


rule models_evaluate:
    input:
        ddpm=get_ddpm,
        classifier=get_classifier,
    output:
        table=f"{R}/tables/models.parquet",
        samples=f"{R}/models/evaluation_samples.safetensors",
    log:
        f"{R}/logs/models_evaluate.log",
    benchmark:
        f"{R}/benchmarks/models_evaluate.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("models_evaluate")
    resources:
        gpu=stage_resources("models")["gpu"],
        mem_mb=stage_mem_mb("models"),
        runtime=stage_runtime("models"),
    params:
        settings=get_settings("models_evaluate"),
        execution=get_execution("models_evaluate"),
        code=get_code("models_evaluate"),
    script:
        "../scripts/models_evaluate.py"


rule models_plot:
    input:
        table=f"{R}/tables/models.parquet",
        samples=f"{R}/models/evaluation_samples.safetensors",
    output:
        report(
            f"{R}/plots/model_samples.png",
            caption="../report/model_samples.rst",
            category="Models",
        ),
    log:
        f"{R}/logs/models_plot.log",
    benchmark:
        f"{R}/benchmarks/models_plot.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("models_plot"),
        execution=get_execution("models_plot"),
        code=get_code("models_plot"),
    script:
        "../scripts/models_plot.py"
