from diffxai.stages.components import components_plot
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: components_plot(
        s.config,
        s.input.attribution,
        s.input.editing,
        s.input.counterfactual,
        s.input.baseline_samples,
        list(s.input.arrays),
        s.output.mass,
        s.output.editing,
        s.output.scatter,
        s.output.grid,
    ),
)
