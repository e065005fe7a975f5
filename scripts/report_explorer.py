from diffxai.plots import explorer
from diffxai.workflow.jobs import run_job

run_job(snakemake, explorer.build)
