from diffxai.stages.trajectories import build_trajectories
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: build_trajectories(s.config, s.wildcards.cls, s.input.get("ddpm") or None, s.output[0]))
