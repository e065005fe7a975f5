from diffxai.jobs import run_job
from diffxai.pipeline import evaluate_models

run_job(
    snakemake,
    lambda s: evaluate_models(
        s.config, s.input.get("ddpm") or None, s.input.get("classifier") or None, s.output.table, s.output.plot
    ),
)
