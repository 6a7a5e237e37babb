"""Tasks that read and validate the raw tables."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.data.validation import ValidationReport
from privgate.errors import ValidationFailedError, withheld
from privgate.preflight import CheckReport, preflight
from privgate.registry.model_card import escape_markdown
from tasks._options import IN_MEMORY, content_keyed


@task(name="ingest", **IN_MEMORY)
def ingest_tables(config: PipelineConfig) -> stages.Tables:
    """Read the raw training and test tables."""
    with withheld("ingest"):
        tables = stages.ingest(config)
    get_run_logger().info(
        "read %d training rows x %d columns and %d test rows",
        len(tables.train),
        tables.train.shape[1],
        len(tables.test),
    )
    return tables


# `training.seed` draws the rows `data.sample_rows` keeps.
@task(name="validate", **content_keyed("data", "training.seed"))
def validate_raw_table(tables: stages.Tables, config: PipelineConfig) -> ValidationReport:
    """Validate the raw tables with Great Expectations; a failure stops the run."""
    try:
        with withheld("validate"):
            report = stages.validate(tables, config)
    except ValidationFailedError as exc:
        create_markdown_artifact(
            key="data-validation", markdown=f"## Data validation: FAILED\n\n{exc}\n"
        )
        raise
    create_markdown_artifact(
        key="data-validation",
        markdown=f"## Data validation: passed\n\n{report.evaluated} expectations of suite "
        f"`{report.suite}` passed.\n",
    )
    return report


@task(name="preflight", **IN_MEMORY)
def preflight_checks(
    tables: stages.Tables, config: PipelineConfig, policy: PrivacyPolicy
) -> CheckReport:
    """Every check that needs no training, before anything is charged (`privgate check`)."""
    with withheld("preflight"):
        report = preflight(tables, config, policy)
    lines = "\n".join(
        f"- **{f.level}** {f.check}: {escape_markdown(f.message)}" for f in report.findings
    )
    verdict = "passed" if report.ok else "FAILED"
    create_markdown_artifact(key="preflight", markdown=f"## Preflight: {verdict}\n\n{lines}\n")
    for finding in report.findings:
        if finding.level != "note":
            get_run_logger().warning("preflight %s: %s", finding.check, finding.message)
    return report
