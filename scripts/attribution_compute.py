from diffxai.jobs import run_job
from diffxai.pipeline_attribution import compute_attribution

run_job(
    snakemake,
    lambda s: compute_attribution(
        s.config, s.wildcards.cls, s.wildcards.method, s.input.trajectories, s.input.get("classifier") or None,
        s.output.maps, s.output.stats, s.output.faithfulness,
    ),
)
