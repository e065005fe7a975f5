from diffxai.stages import attribution
from diffxai.workflow.jobs import run_job

run_job(snakemake, attribution.sanity)
