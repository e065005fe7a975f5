from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/trajectories.smk"
include: "rules/likelihood.smk"
include: "rules/report.smk"
include: "rules/attribution.smk"
include: "rules/schedules.smk"
include: "rules/components.smk"
include: "rules/saliency.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
