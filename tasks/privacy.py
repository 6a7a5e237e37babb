"""Tasks that find PII, anonymize, and verify the anonymized table."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from privgate.pii.engine import ScanReport
from privgate.registry.model_card import escape_markdown
from tasks._options import IN_MEMORY, content_keyed


# The scan also reads the declared quasi-identifiers and samples with the seed.
@task(
    name="scan-pii",
    **content_keyed("data", "pii", "anonymization.quasi_identifiers", "training.seed"),
)
def scan_pii(tables: stages.Tables, config: PipelineConfig) -> ScanReport:
    """Classify every column of the raw training table with Presidio."""
    with withheld("scan-pii"):
        report = stages.scan(tables, config)
    # Column names come from the raw header, which privgate does not control.
    rows = [
        f"| {escape_markdown(c.name)} | {c.kind} | "
        + ", ".join(f"{e} {f:.0%}" for e, f in c.entities.items())
        + f" | {c.cells_scanned} |"
        for c in report.columns
    ]
    create_markdown_artifact(
        key="pii-scan",
        markdown="## PII scan\n\n| column | kind | entities (share of scanned cells) | cells "
        "scanned |\n|---|---|---|---|\n" + "\n".join(rows) + "\n",
    )
    get_run_logger().info("scanned %d columns in %.1f s", len(report.columns), report.seconds)
    return report


@task(name="anonymize", **IN_MEMORY)
def anonymize_records(
    tables: stages.Tables, scan: ScanReport, config: PipelineConfig
) -> stages.Anonymized:
    """Apply the policy's column actions and generalize to k-anonymity."""
    with withheld("anonymize"):
        anonymized = stages.anonymize(tables, scan, config)
    kanon = anonymized.report.kanon
    rows = [
        f"| {escape_markdown(t.column)} | {t.action} | {t.source} |"
        for t in anonymized.report.treatments
    ]
    create_markdown_artifact(
        key="anonymization",
        markdown="## Anonymization\n\n| column | action | decided by |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nk target {kanon.k_target}, achieved {kanon.k_achieved}; "
        f"{kanon.suppressed_rows} of {kanon.total_rows} rows suppressed; information loss "
        f"{kanon.information_loss:.3f}; levels: "
        + ", ".join(f"{escape_markdown(c)} {label}" for c, label in kanon.level_labels.items())
        + "\n",
    )
    get_run_logger().info(
        "anonymized: k=%d, %d rows suppressed", kanon.k_achieved, kanon.suppressed_rows
    )
    return anonymized


@task(name="verify-anonymization", **IN_MEMORY)
def verify_anonymization(
    anonymized: stages.Anonymized, config: PipelineConfig, policy: PrivacyPolicy
) -> stages.Verification:
    """Re-scan the anonymized table for direct identifiers and re-measure k."""
    with withheld("verify-anonymization"):
        verification = stages.verify(anonymized, config, policy)
    get_run_logger().info(
        "residual identifier cells: %s (%s); k measured: %d",
        verification.residual_total,
        verification.residual_by_verifier(),
        verification.k_measured,
    )
    return verification
