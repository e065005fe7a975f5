from diffxai.plots import report
from diffxai.workflow.jobs import run_job

run_job(snakemake, report.tables)
