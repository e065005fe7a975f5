from diffxai.stages.saliency import plot_saliency
from diffxai.workflow.jobs import run_job

run_job(
    snakemake,
    lambda s: plot_saliency(
        s.config, s.input.table, list(s.input.maps), s.output.overlays, s.output.layers, s.output.auc
    ),
)
