from diffxai.stages.components import components_aggregate
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: components_aggregate(
        s.config,
        list(s.input.attribution),
        list(s.input.editing),
        list(s.input.counterfactual),
        s.output.attribution,
        s.output.editing,
        s.output.counterfactual,
    ),
)
