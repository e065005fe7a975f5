from diffxai.jobs import run_job
from diffxai.pipeline_attribution import aggregate_attribution

run_job(
    snakemake,
    lambda s: aggregate_attribution(
        s.config, list(s.input.stats), list(s.input.faithfulness), list(s.input.sanity),
        s.output.stats, s.output.faithfulness, s.output.sanity,
    ),
)
