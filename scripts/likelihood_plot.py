from diffxai.stages.likelihood import plot_likelihood
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: plot_likelihood(
        s.config, s.input.likelihood, s.input.intervals, s.output.by_view, s.output.by_class
    ),
)
