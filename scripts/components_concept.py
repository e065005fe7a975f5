from diffxai.stages.components import components_concept
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: components_concept(
        s.config,
        s.wildcards.concept,
        s.input.get("ddpm") or None,
        s.input.get("classifier") or None,
        s.input.baseline,
        s.output.attribution,
        s.output.editing,
        s.output.counterfactual,
        s.output.arrays,
    ),
)
