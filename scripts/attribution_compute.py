from diffxai.stages.attribution import compute_attribution
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: compute_attribution(
        s.config, s.wildcards.cls, s.wildcards.method, s.input.trajectories, s.input.get("classifier") or None,
        s.output.maps, s.output.stats, s.output.faithfulness,
    ),
)
