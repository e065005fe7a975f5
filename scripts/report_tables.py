from diffxai.plots.report import write_tables_html
from diffxai.workflow.jobs import run_job

run_job(snakemake, lambda s: write_tables_html(list(s.input), s.output[0], max_rows=s.params.max_rows))
