from diffxai.stages import saliency
from diffxai.workflow.jobs import run_job

run_job(snakemake, saliency.aggregate)
