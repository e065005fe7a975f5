from diffxai.stages import schedules
from diffxai.workflow.jobs import run_job

run_job(snakemake, schedules.aggregate)
