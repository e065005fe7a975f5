from snakemake.utils import min_version

min_version("8.0")


include: "rules/config.smk"


# The demo config is the default; a config given with --configfile replaces it (whatever that
# file leaves out takes the schema's defaults) instead of being merged into the demo's values.
if not workflow.overwrite_configfiles:
    check_config_file("config/config.yaml")

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/trajectories.smk"
include: "rules/likelihood.smk"
include: "rules/attribution.smk"
include: "rules/saliency.smk"
include: "rules/schedules.smk"
include: "rules/components.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
