from diffxai.jobs import run_job
from diffxai.pipeline import train_classifier

run_job(snakemake, lambda s: train_classifier(s.config, s.output[0]))
