from snakemake.utils import min_version

min_version("8.0")


include: "rules/config.smk"


# The demo config is the default; a config given with --configfile replaces it (whatever that
# file leaves out takes the schema's defaults) instead of being merged into the demo's values.
# Either way the file is read with diffxai's loader too (it refuses a key given twice).
if workflow.overwrite_configfiles:
    check_config_files(workflow.overwrite_configfiles)
else:
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


# Every table carries the package's AST hash (diffxai.io.tables.provenance): computed here once,
# after the rules' code hashes have parsed the package, and inherited by every job.
os.environ[SOURCE_HASH_ENV] = package_hash()


rule all:
    default_target: True
    input:
        get_final_output(),
