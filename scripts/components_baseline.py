from diffxai.jobs import run_job
from diffxai.pipeline_components import components_baseline

run_job(
    snakemake,
    lambda s: components_baseline(
        s.config,
        s.input.get("ddpm") or None,
        s.input.get("classifier") or None,
        s.output.table,
        s.output.samples,
    ),
)
