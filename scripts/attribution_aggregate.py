from diffxai.stages.attribution import aggregate_attribution
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: aggregate_attribution(
        s.config, list(s.input.stats), list(s.input.faithfulness), list(s.input.sanity),
        s.output.stats, s.output.faithfulness, s.output.sanity,
    ),
)
