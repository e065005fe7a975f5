from diffxai.jobs import run_job
from diffxai.pipeline_schedules import commitment_pair

run_job(
    snakemake,
    lambda s: commitment_pair(
        s.config, s.wildcards.pair, s.input.get("ddpm") or None, s.input.get("classifier") or None, s.output[0]
    ),
)
