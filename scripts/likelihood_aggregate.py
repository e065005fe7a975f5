from diffxai.jobs import run_job
from diffxai.pipeline import aggregate_likelihood

run_job(snakemake, lambda s: aggregate_likelihood(s.config, list(s.input), s.output.likelihood, s.output.intervals))
