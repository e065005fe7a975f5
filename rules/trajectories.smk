rule trajectories_build:
    input:
        ddpm=get_ddpm,
        images=get_class_images,
    output:
        f"{R}/trajectories/{{cls}}.safetensors",
    log:
        f"{R}/logs/trajectories_build/{{cls}}.log",
    benchmark:
        f"{R}/benchmarks/trajectories_build/{{cls}}.tsv"
    conda:
        "../envs/diffxai.yaml"
    threads: get_threads("trajectories_build")
    resources:
        gpu=stage_resources("trajectories")["gpu"],
        mem_mb=stage_mem_mb("trajectories"),
        runtime=stage_runtime("trajectories"),
    params:
        settings=get_settings("trajectories_build"),
        execution=get_execution("trajectories_build"),
        code=get_code("trajectories_build"),
    script:
        "../scripts/trajectories_build.py"


rule trajectories_plot:
    input:
        get_trajectories,
    output:
        report(
            f"{R}/plots/trajectories.png",
            caption="../report/trajectories.rst",
            category="Trajectories",
        ),
    log:
        f"{R}/logs/trajectories_plot.log",
    benchmark:
        f"{R}/benchmarks/trajectories_plot.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("trajectories_plot"),
        execution=get_execution("trajectories_plot"),
        code=get_code("trajectories_plot"),
    script:
        "../scripts/trajectories_plot.py"
