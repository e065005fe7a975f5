from diffxai.stages.trajectories import plot_trajectories
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: plot_trajectories(s.config, list(s.input), s.output[0]))
