from diffxai.jobs import run_job
from diffxai.pipeline_saliency import aggregate_saliency

run_job(snakemake, lambda s: aggregate_saliency(s.config, list(s.input), s.output[0]))
