from diffxai.jobs import run_job
from diffxai.pipeline import train_ddpm

run_job(snakemake, lambda s: train_ddpm(s.config, s.output[0]))
