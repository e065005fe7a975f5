from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/trajectories.smk"
include: "rules/likelihood.smk"


rule all:
    input:
        get_final_outputs(),
    default_target: True
