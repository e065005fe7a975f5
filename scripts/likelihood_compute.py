from diffxai.jobs import run_job
from diffxai.pipeline import compute_likelihood

run_job(
    snakemake,
    lambda s: compute_likelihood(
        s.config, s.wildcards.cls, s.input.trajectories, s.input.get("classifier") or None, s.output[0]
    ),
)
