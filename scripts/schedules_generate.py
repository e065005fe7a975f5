from diffxai.stages.schedules import generate_schedule
from diffxai.workflow.jobs import run_job

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
