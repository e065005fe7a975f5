from diffxai.jobs import run_job
from diffxai.pipeline import build_trajectories

run_job(snakemake, lambda s: build_trajectories(s.config, s.wildcards.cls, s.input.get("ddpm") or None, s.output[0]))
