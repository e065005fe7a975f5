from diffxai.jobs import run_job
from diffxai.pipeline_saliency import compute_saliency

run_job(
    snakemake,
    lambda s: compute_saliency(
        s.config, s.wildcards.saliency, s.wildcards.cls, s.input.get("ddpm") or None, s.output.maps, s.output.table
    ),
)
