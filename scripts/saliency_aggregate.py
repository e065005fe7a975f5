from diffxai.stages.saliency import aggregate_saliency
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: aggregate_saliency(s.config, list(s.input), s.output[0]))
