from diffxai.plots import trajectories
from diffxai.workflow.jobs import run_job

run_job(snakemake, trajectories.plot)
