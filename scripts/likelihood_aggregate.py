from diffxai.stages import likelihood
from diffxai.workflow.jobs import run_job

run_job(snakemake, likelihood.aggregate)
