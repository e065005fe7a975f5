from diffxai.stages.attribution import plot_attribution_summary
from diffxai.workflow.jobs import run_job


def main(s):
    stats = {k[len("stats_"):]: v for k, v in s.output.items() if k.startswith("stats_")}
    out = {"stats": stats, "classes": s.output.classes, "faithfulness": s.output.faithfulness, "sanity": s.output.sanity}
    plot_attribution_summary(s.config, s.input.stats, s.input.faithfulness, s.input.sanity, s.input.intervals, out)


run_job(snakemake, main)
