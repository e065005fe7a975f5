from diffxai.stages.components import components_baseline
from diffxai.workflow.jobs import run_job

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
