from diffxai.stages.models import train_classifier
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: train_classifier(s.config, s.output[0]))
