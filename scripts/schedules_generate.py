from diffxai.jobs import run_job
from diffxai.pipeline_schedules import generate_schedule

run_job(
    snakemake,
    lambda s: generate_schedule(
        s.config,
        s.wildcards.schedule,
        s.input.get("ddpm") or None,
        s.input.get("classifier") or None,
        s.output.samples,
        s.output.table,
        s.output.steps,
    ),
)
