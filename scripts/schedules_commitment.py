from diffxai.stages.schedules import commitment_pair
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: commitment_pair(
        s.config, s.wildcards.pair, s.input.get("ddpm") or None, s.input.get("classifier") or None, s.output[0]
    ),
)
