from diffxai.stages.schedules import aggregate_schedules
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: aggregate_schedules(
        s.config,
        list(s.input.tables),
        list(s.input.steps),
        list(s.input.samples),
        list(s.input.commitment),
        s.output.sampling,
        s.output.steps,
        s.output.distances,
        s.output.commitment,
        s.output.commitment_summary,
    ),
)
