from diffxai.jobs import run_job
from diffxai.pipeline_schedules import aggregate_schedules

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
