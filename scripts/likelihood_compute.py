from diffxai.stages.likelihood import compute_likelihood
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: compute_likelihood(
        s.config, s.wildcards.cls, s.input.trajectories, s.input.get("classifier") or None, s.output[0]
    ),
)
