from diffxai.stages.models import evaluate_models
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: evaluate_models(
        s.config, s.input.get("ddpm") or None, s.input.get("classifier") or None, s.output.table, s.output.plot
    ),
)
