from diffxai.stages.schedules import plot_schedules
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: plot_schedules(
        s.config,
        s.input.sampling,
        s.input.steps,
        s.input.distances,
        s.input.commitment,
        s.input.commitment_summary,
        list(s.input.samples),
        s.output.grid,
        s.output.prob,
        s.output.distances,
        s.output.commitment,
    ),
)
