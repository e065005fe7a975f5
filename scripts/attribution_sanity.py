from diffxai.stages.attribution import sanity_check
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: sanity_check(
        s.config, s.wildcards.method, list(s.input.trajectories), s.input.get("classifier") or None, s.output[0]
    ),
)
