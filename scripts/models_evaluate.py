from diffxai.stages import models
from diffxai.workflow.jobs import run_job

run_job(snakemake, models.evaluate)
