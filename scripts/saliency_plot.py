from diffxai.jobs import run_job
from diffxai.pipeline_saliency import plot_saliency

run_job(
    snakemake,
    lambda s: plot_saliency(
        s.config, s.input.table, list(s.input.maps), s.output.overlays, s.output.layers, s.output.auc
    ),
)
