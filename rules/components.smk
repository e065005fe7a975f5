rule components_baseline:
    input:
        ddpm=get_ddpm,
        classifier=get_stage_classifier("components"),
    output:
        table=f"{R}/components/baseline.parquet",
        samples=f"{R}/components/baseline_samples.safetensors",
    log:
        f"{R}/logs/components_baseline.log",
    benchmark:
        f"{R}/benchmarks/components_baseline.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("components_baseline")
    resources:
        gpu=stage_resources("components")["gpu"],
        mem_mb=stage_mem_mb("components"),
        runtime=stage_runtime("components"),
    params:
        settings=get_settings("components_baseline"),
        execution=get_execution("components_baseline"),
        code=get_code("components_baseline"),
    script:
        "../scripts/components_baseline.py"


rule components_concept:
    input:
        ddpm=get_ddpm,
        classifier=get_stage_classifier("components"),
        baseline=f"{R}/components/baseline.parquet",
    output:
        attribution=f"{R}/components/{{concept}}/attribution.parquet",
        editing=f"{R}/components/{{concept}}/editing.parquet",
        counterfactual=f"{R}/components/{{concept}}/counterfactual.parquet",
        arrays=f"{R}/components/{{concept}}/arrays.safetensors",
    log:
        f"{R}/logs/components_concept/{{concept}}.log",
    benchmark:
        f"{R}/benchmarks/components_concept/{{concept}}.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("components_concept")
    resources:
        gpu=stage_resources("components")["gpu"],
        mem_mb=stage_mem_mb("components"),
        runtime=stage_runtime("components"),
    params:
        settings=get_settings("components_concept"),
        execution=get_execution("components_concept"),
        code=get_code("components_concept"),
    script:
        "../scripts/components_concept.py"


rule components_aggregate:
    input:
        attribution=get_component_tables("attribution"),
        editing=get_component_tables("editing"),
        counterfactual=get_component_tables("counterfactual"),
    output:
        attribution=f"{R}/tables/component_attribution.parquet",
        editing=f"{R}/tables/concept_editing.parquet",
        counterfactual=f"{R}/tables/component_counterfactual.parquet",
    log:
        f"{R}/logs/components_aggregate.log",
    benchmark:
        f"{R}/benchmarks/components_aggregate.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("components_aggregate"),
        execution=get_execution("components_aggregate"),
        code=get_code("components_aggregate"),
    script:
        "../scripts/components_aggregate.py"


rule components_plot:
    input:
        attribution=f"{R}/tables/component_attribution.parquet",
        editing=f"{R}/tables/concept_editing.parquet",
        counterfactual=f"{R}/tables/component_counterfactual.parquet",
        baseline_samples=f"{R}/components/baseline_samples.safetensors",
        arrays=get_component_arrays,
    output:
        mass=report(
            f"{R}/plots/components_attribution_mass.png",
            caption="../report/components_attribution_mass.rst",
            category="Component attribution",
        ),
        editing=report(
            f"{R}/plots/components_editing.png",
            caption="../report/components_editing.rst",
            category="Component attribution",
        ),
        scatter=report(
            f"{R}/plots/components_counterfactual.png",
            caption="../report/components_counterfactual.rst",
            category="Component attribution",
        ),
        grid=report(
            f"{R}/plots/components_samples.png",
            caption="../report/components_samples.rst",
            category="Component attribution",
        ),
    log:
        f"{R}/logs/components_plot.log",
    benchmark:
        f"{R}/benchmarks/components_plot.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("components_plot"),
        execution=get_execution("components_plot"),
        code=get_code("components_plot"),
    script:
        "../scripts/components_plot.py"
