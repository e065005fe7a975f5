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
    threads: 1
    resources:
        gpu=stage_resources("trajectories")["gpu"],
        mem_mb=stage_mem_mb("trajectories"),
        runtime=stage_runtime("trajectories"),
    params:
        noise=config["noise"],
        trajectories=config["trajectories"],
        data=config["data"],
        diffusion=config["models"]["diffusion"],
        cls=lambda wc: next(c for c in config["classes"] if c["name"] == wc.cls),
        seed=config["seed"],
        code=get_code_hash(
            "trajectories", "noising", "sampling", "models", "data", "pipeline"
        ),
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
        plots=config["plots"],
        code=get_code_hash("plots", "pipeline"),
    script:
        "../scripts/trajectories_plot.py"


if "trajectories" in config["stages"]:
    FINAL_OUTPUTS.append(f"{R}/plots/trajectories.png")
