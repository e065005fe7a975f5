from diffxai.stages.attribution import plot_attribution_maps
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: plot_attribution_maps(
        s.config, list(s.input.maps), dict(zip([c["name"] for c in s.config["classes"]], s.input.trajectories)),
        list(s.output),
    ),
)
