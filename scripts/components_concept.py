from diffxai.stages import components
from diffxai.workflow.jobs import run_job

run_job(snakemake, components.concept)
