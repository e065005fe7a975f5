rule report_tables:
    input:
        get_report_tables,
    output:
        report(
            directory(f"{R}/report/tables"),
            patterns=["{table}.html"],
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        f"{R}/logs/report_tables.log",
    benchmark:
        f"{R}/benchmarks/report_tables.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("report_tables"),
        execution=get_execution("report_tables"),
        code=get_code("report_tables"),
    script:
        "../scripts/report_tables.py"


rule report_explorer:
    input:
        unpack(get_explorer_inputs),
    output:
        directory(f"{R}/explorer"),
    log:
        f"{R}/logs/report_explorer.log",
    benchmark:
        f"{R}/benchmarks/report_explorer.tsv"
    conda:
        "../envs/diffxai.yaml"
    params:
        settings=get_settings("report_explorer"),
        execution=get_execution("report_explorer"),
        code=get_code("report_explorer"),
    script:
        "../scripts/report_explorer.py"
