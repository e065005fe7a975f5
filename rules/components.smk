COMPONENT_CONCEPTS = list(config["components"]["concepts"])


wildcard_constraints:
    concept="|".join(COMPONENT_CONCEPTS) or "^$",


rule components_baseline:
    input:
        ddpm=get_ddpm,
        classifier=get_classifier,
    output:
        table=f"{R}/components/baseline.parquet",
        samples=f"{R}/components/baseline_samples.safetensors",
    log:
        f"{R}/logs/components_baseline.log",
    benchmark:
        f"{R}/benchmarks/components_baseline.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: 1
    resources:
        gpu=stage_resources("components")["gpu"],
        mem_mb=stage_mem_mb("components"),
        runtime=stage_runtime("components"),
    params:
        evaluation=config["components"]["evaluation"],
        classes=config["components"]["eval_classes"] or config["classes"],
        models=config["models"],
        seed=config["seed"],
        code=get_code_hash(
            "pipeline_components",
            "components",
            "models",
            "sampling",
            "likelihood",
            "tables",
        ),
    script:
        "../scripts/components_baseline.py"


rule components_concept:
    input:
        ddpm=get_ddpm,
        classifier=get_classifier,
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
    threads: 1
    resources:
        gpu=stage_resources("components")["gpu"],
        mem_mb=stage_mem_mb("components"),
        runtime=stage_runtime("components"),
    params:
        components={
            k: v
            for k, v in config["components"].items()
            if k not in ("resources", "concepts")
        },
        classes=config["components"]["eval_classes"] or config["classes"],
        models=config["models"],
        seed=config["seed"],
        code=get_code_hash(
            "pipeline_components",
            "components",
            "models",
            "sampling",
            "likelihood",
            "tables",
        ),
    script:
        "../scripts/components_concept.py"


rule components_aggregate:
    input:
        attribution=expand(
            f"{R}/components/{{concept}}/attribution.parquet",
            concept=COMPONENT_CONCEPTS,
        ),
        editing=expand(
            f"{R}/components/{{concept}}/editing.parquet", concept=COMPONENT_CONCEPTS
        ),
        counterfactual=expand(
            f"{R}/components/{{concept}}/counterfactual.parquet",
            concept=COMPONENT_CONCEPTS,
        ),
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
        code=get_code_hash("pipeline_components", "tables"),
    script:
        "../scripts/components_aggregate.py"


rule components_plot:
    input:
        attribution=f"{R}/tables/component_attribution.parquet",
        editing=f"{R}/tables/concept_editing.parquet",
        counterfactual=f"{R}/tables/component_counterfactual.parquet",
        baseline_samples=f"{R}/components/baseline_samples.safetensors",
        arrays=expand(
            f"{R}/components/{{concept}}/arrays.safetensors",
            concept=COMPONENT_CONCEPTS,
        ),
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
        plots=config["plots"],
        code=get_code_hash("pipeline_components", "plots_components", "plots"),
    script:
        "../scripts/components_plot.py"


if "components" in config["stages"] and COMPONENT_CONCEPTS:
    FINAL_OUTPUTS.extend(
        [
            f"{R}/tables/component_attribution.parquet",
            f"{R}/tables/concept_editing.parquet",
            f"{R}/tables/component_counterfactual.parquet",
            f"{R}/plots/components_attribution_mass.png",
            f"{R}/plots/components_editing.png",
            f"{R}/plots/components_counterfactual.png",
            f"{R}/plots/components_samples.png",
        ]
    )
