from diffxai.jobs import run_job
from diffxai.pipeline import plot_likelihood

run_job(
    snakemake,
    lambda s: plot_likelihood(
        s.config, s.input.likelihood, s.input.intervals, s.output.by_view, s.output.by_class
    ),
)
