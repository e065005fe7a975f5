from diffxai.jobs import run_job
from diffxai.pipeline import plot_trajectories

run_job(snakemake, lambda s: plot_trajectories(s.config, list(s.input), s.output[0]))
