rule trajectories_build:
    input:
        ddpm=get_ddpm,
        images=get_class_images,
    output:
        f"{R}/trajectories/{{cls}}.safetensors",
    params:
        noise=config["noise"],
        trajectories=config["trajectories"],
        data=config["data"],
        diffusion=config["models"]["diffusion"],
        cls=lambda wc: next(c for c in config["classes"] if c["name"] == wc.cls),
        seed=config["seed"],
        code=get_code_hash("trajectories", "noising", "sampling", "models", "data", "pipeline"),
    log:
        f"{R}/logs/trajectories_build/{{cls}}.log",
    benchmark:
        f"{R}/benchmarks/trajectories_build/{{cls}}.tsv"
    threads: 1
    resources:
        gpu=stage_resources("trajectories")["gpu"],
        mem_mb=stage_resources("trajectories")["mem_mb"],
        runtime=stage_resources("trajectories")["runtime"],
    script:
        "../scripts/trajectories_build.py"


rule trajectories_plot:
    input:
        get_trajectories,
    output:
        f"{R}/plots/trajectories.png",
    params:
        plots=config["plots"],
        code=get_code_hash("plots", "pipeline"),
    log:
        f"{R}/logs/trajectories_plot.log",
    benchmark:
        f"{R}/benchmarks/trajectories_plot.tsv"
    script:
        "../scripts/trajectories_plot.py"


if "trajectories" in config["stages"]:
    FINAL_OUTPUTS.append(f"{R}/plots/trajectories.png")
