from diffxai.jobs import run_job
from diffxai.report import write_tables_html

run_job(snakemake, lambda s: write_tables_html(list(s.input), s.output[0], max_rows=s.params.max_rows))
