from diffxai.plots import saliency
from diffxai.workflow.jobs import run_job

run_job(snakemake, saliency.plot)
