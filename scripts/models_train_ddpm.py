from diffxai.stages.models import train_ddpm
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: train_ddpm(s.config, s.output[0]))
