from diffxai.stages.saliency import compute_saliency
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: compute_saliency(
        s.config, s.wildcards.saliency, s.wildcards.cls, s.input.get("ddpm") or None, s.output.maps, s.output.table
    ),
)
