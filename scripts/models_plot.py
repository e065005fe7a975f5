from diffxai.plots import models
from diffxai.workflow.jobs import run_job

run_job(snakemake, models.plot)
