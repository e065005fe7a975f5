from diffxai.stages.likelihood import aggregate_likelihood
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: aggregate_likelihood(s.config, list(s.input), s.output.likelihood, s.output.intervals))
