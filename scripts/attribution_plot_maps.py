from diffxai.jobs import run_job
from diffxai.pipeline_attribution import plot_attribution_maps

run_job(
    snakemake,
    lambda s: plot_attribution_maps(
        s.config, list(s.input.maps), dict(zip([c["name"] for c in s.config["classes"]], s.input.trajectories)),
        list(s.output),
    ),
)
