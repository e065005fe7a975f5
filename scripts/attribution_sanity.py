from diffxai.jobs import run_job
from diffxai.pipeline_attribution import sanity_check

run_job(
    snakemake,
    lambda s: sanity_check(
        s.config, s.wildcards.method, list(s.input.trajectories), s.input.get("classifier") or None, s.output[0]
    ),
)
