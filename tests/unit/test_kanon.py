"""Unit tests for `privgate.kanon`: generalization, class sizes and the k-anonymity search.

The k-anonymity and optimality checks here are deliberately independent of the module's
counting code: classes are counted with a plain `Counter` over row tuples, and the
optimum is found by brute force over the whole lattice.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from privgate.config import (
    GroupHierarchy,
    Hierarchy,
    IntervalHierarchy,
    PrefixHierarchy,
    load_config,
)
from privgate.errors import ConfigError
from privgate.home import PROJECT_ROOT
from privgate.kanon import (
    KAnonymityResult,
    apply_generalization,
    find_k_anonymous_generalization,
    generalize_column,
    hierarchy_height,
    information_loss,
    measure_k,
)

AGE = IntervalHierarchy(widths=[5, 10, 20])
ZIP = PrefixHierarchy(keep=[3, 1])
SEX = GroupHierarchy()
RACE = GroupHierarchy(
    levels=[{"White": "White", "Black": "Non-white", "Asian": "Non-white", "Other": "Non-white"}]
)
SMALL_QIS: dict[str, Hierarchy] = {"age": AGE, "zip_code": ZIP, "sex": SEX, "race": RACE}
ADULT_TRAIN = PROJECT_ROOT / "data" / "adult" / "adult.train.csv.gz"

_MISSING = object()  # stands for every flavour of missing value in the independent checks


# --------------------------------------------------------------------------- helpers


def _small_table(seed: int, rows: int = 40) -> pd.DataFrame:
    """Return a seeded table with the four small QIs, a few missing values included."""
    rng = np.random.default_rng(seed)
    age = rng.integers(28, 52, rows).astype(float)
    age[rng.random(rows) < 0.05] = np.nan
    zips = [
        f"{prefix}{rng.integers(0, 20):02d}" for prefix in rng.choice(["021", "024", "945"], rows)
    ]
    zip_code = [None if rng.random() < 0.05 else value for value in zips]
    return pd.DataFrame(
        {
            "age": age,
            "zip_code": pd.Series(zip_code, dtype=object),
            "sex": rng.choice(["F", "M"], rows),
            "race": rng.choice(["White", "White", "Black", "Asian", "Other"], rows),
            "income": rng.choice(["<=50K", ">50K"], rows),
        }
    )


def _row_classes(frame: pd.DataFrame, columns: Sequence[str]) -> Counter[tuple[object, ...]]:
    """Count equivalence classes with plain Python, missing values as one marker."""
    return Counter(
        tuple(_MISSING if pd.isna(value) else value for value in row)
        for row in frame[list(columns)].itertuples(index=False, name=None)
    )


def _brute_force_optimum(
    frame: pd.DataFrame,
    quasi_identifiers: Mapping[str, Hierarchy],
    *,
    k: int,
    max_suppression: float,
) -> tuple[dict[str, int], float]:
    """Try every lattice node; return the acceptable one of least loss (ties: height, lex)."""
    budget = math.floor(max_suppression * len(frame) + 1e-9)
    heights = [hierarchy_height(hierarchy) for hierarchy in quasi_identifiers.values()]
    candidates = []
    for node in itertools.product(*(range(height) for height in heights)):
        levels = dict(zip(quasi_identifiers, node, strict=True))
        generalized = pd.DataFrame(
            {
                column: generalize_column(frame[column], hierarchy, levels[column])
                for column, hierarchy in quasi_identifiers.items()
            }
        )
        classes = _row_classes(generalized, list(quasi_identifiers))
        suppressed = sum(size for size in classes.values() if size < k)
        if suppressed <= budget:
            loss = information_loss(frame, quasi_identifiers=quasi_identifiers, levels=levels, k=k)
            candidates.append((loss, sum(node), node))
    least = min(loss for loss, _, _ in candidates)
    _, _, best = min(c for c in candidates if c[0] <= least + 1e-9)
    return dict(zip(quasi_identifiers, best, strict=True)), least


def _adult_sample(rows: int) -> pd.DataFrame:
    return pd.read_csv(ADULT_TRAIN, nrows=rows)


# --------------------------------------------------------------------------- hierarchies


def test_when_age_is_generalized_then_each_level_is_an_aligned_interval() -> None:
    # given
    ages = pd.Series([37, 40, 0], name="age")

    # when
    levels = [generalize_column(ages, AGE, level).tolist() for level in range(5)]

    # then
    assert levels == [
        ["37", "40", "0"],
        ["35-39", "40-44", "0-4"],
        ["30-39", "40-49", "0-9"],
        ["20-39", "40-59", "0-19"],
        ["*", "*", "*"],
    ]


def test_when_an_origin_is_set_then_intervals_start_from_it() -> None:
    # given
    hierarchy = IntervalHierarchy(widths=[5], origin=3)

    # when
    generalized = generalize_column(pd.Series([37, 2], name="age"), hierarchy, 1)

    # then
    assert generalized.tolist() == ["33-37", "-2-2"]


def test_when_a_float_column_is_generalized_then_whole_numbers_read_as_integers() -> None:
    # given: an integer column that gained a NaN is float
    ages = pd.Series([37.0, 38.5], name="age")

    # when
    raw = generalize_column(ages, AGE, 0)
    banded = generalize_column(ages, AGE, 1)

    # then
    assert raw.tolist() == ["37", "38.5"]
    assert banded.tolist() == ["35-39", "35-39"]


def test_when_a_zip_is_generalized_then_the_prefix_is_kept_and_the_rest_masked() -> None:
    # given
    zips = pd.Series(["02139", "0213"], name="zip_code")

    # when
    levels = [generalize_column(zips, ZIP, level).tolist() for level in range(4)]

    # then: the length is kept, so codes of different lengths stay apart
    assert levels == [["02139", "0213"], ["021**", "021*"], ["0****", "0***"], ["*", "*"]]


def test_when_group_levels_chain_then_each_level_maps_the_one_below() -> None:
    # given
    hierarchy = GroupHierarchy(
        levels=[
            {"9th": "Dropout", "HS-grad": "High-school"},
            {"Dropout": "No-degree", "High-school": "No-degree"},
        ]
    )
    education = pd.Series(["9th", "HS-grad"], name="education")

    # when
    levels = [generalize_column(education, hierarchy, level).tolist() for level in range(4)]

    # then
    assert levels == [
        ["9th", "HS-grad"],
        ["Dropout", "High-school"],
        ["No-degree", "No-degree"],
        ["*", "*"],
    ]


def test_when_a_value_is_absent_from_a_group_mapping_then_it_goes_to_star() -> None:
    # given
    races = pd.Series(["White", "Martian"], name="race")

    # when
    generalized = generalize_column(races, RACE, 1)

    # then: over-generalizing is never less private
    assert generalized.tolist() == ["White", "*"]


def test_when_a_group_hierarchy_has_no_levels_then_values_are_raw_or_star() -> None:
    # given
    sexes = pd.Series(["F", "M"], name="sex")

    # when
    heights = hierarchy_height(SEX)
    levels = [generalize_column(sexes, SEX, level).tolist() for level in range(heights)]

    # then
    assert heights == 2
    assert levels == [["F", "M"], ["*", "*"]]


@pytest.mark.parametrize(
    ("hierarchy", "values"),
    [
        (AGE, pd.Series([37.0, np.nan], name="age")),
        (AGE, pd.Series([37, pd.NA], dtype="Int64", name="age")),
        (ZIP, pd.Series(["02139", None], dtype=object, name="zip_code")),
        (RACE, pd.Series(["White", pd.NA], dtype="string", name="race")),
    ],
)
def test_when_a_value_is_missing_then_it_stays_missing_below_the_top_and_is_star_at_it(
    hierarchy: Hierarchy, values: pd.Series
) -> None:
    # given
    top = hierarchy_height(hierarchy) - 1

    # when
    below_top = [generalize_column(values, hierarchy, level) for level in range(top)]
    at_top = generalize_column(values, hierarchy, top)

    # then
    assert all(pd.isna(generalized.iloc[1]) for generalized in below_top)
    assert all(not pd.isna(generalized.iloc[0]) for generalized in below_top)
    assert at_top.tolist() == ["*", "*"]


def test_when_counting_levels_then_raw_and_star_are_included() -> None:
    # given / when
    heights = [hierarchy_height(h) for h in (AGE, ZIP, SEX, RACE)]

    # then
    assert heights == [5, 4, 2, 3]


def test_when_an_interval_hierarchy_meets_text_then_config_error_names_the_column() -> None:
    # given
    frame = pd.DataFrame({"age": ["thirty-seven", "forty"]})

    # when
    with pytest.raises(ConfigError) as raised:
        find_k_anonymous_generalization(
            frame, quasi_identifiers={"age": AGE}, k=2, max_suppression=0.0
        )

    # then: the column is named, no cell value leaks
    assert "'age'" in str(raised.value)
    assert "thirty" not in str(raised.value)


def test_when_a_prefix_hierarchy_keeps_more_at_a_higher_level_then_config_refuses_it() -> None:
    # given / when / then: the config refuses it before kanon could see it
    with pytest.raises(ValidationError, match="shorter"):
        PrefixHierarchy(keep=[1, 3])


# --------------------------------------------------------------------------- measure_k


def test_when_a_missing_value_is_unique_then_it_is_its_own_class() -> None:
    # given
    frame = pd.DataFrame({"zip_code": ["02139", "02139", None]})

    # when
    k = measure_k(frame, ["zip_code"])

    # then
    assert k == 1


def test_when_missing_values_of_any_flavour_repeat_then_they_form_one_class() -> None:
    # given
    frame = pd.DataFrame(
        {"zip_code": pd.Series(["02139", "02139", None, np.nan], dtype=object), "sex": ["F"] * 4}
    )

    # when
    k = measure_k(frame, ["zip_code", "sex"])

    # then
    assert k == 2


def test_when_the_table_is_empty_then_measured_k_is_zero() -> None:
    # given
    frame = pd.DataFrame({"age": pd.Series([], dtype=float)})

    # when / then
    assert measure_k(frame, ["age"]) == 0


def test_when_a_measured_column_is_missing_then_config_error_names_it() -> None:
    # given
    frame = pd.DataFrame({"age": [1]})

    # when / then
    with pytest.raises(ConfigError, match="zip_code"):
        measure_k(frame, ["age", "zip_code"])


# --------------------------------------------------------------------------- information loss


def test_when_values_share_a_group_then_each_cell_loses_its_covered_share() -> None:
    # given: ages {1, 2} and {6, 7} share a width-5 interval: 2 of 4 raw values each
    frame = pd.DataFrame({"age": [1, 2, 6, 7], "sex": ["F", "F", "M", "M"]})
    qis: dict[str, Hierarchy] = {"age": IntervalHierarchy(widths=[5]), "sex": SEX}
    levels = {"age": 1, "sex": 0}

    # when
    kept = information_loss(frame, quasi_identifiers=qis, levels=levels, k=2)
    suppressed = information_loss(frame, quasi_identifiers=qis, levels=levels, k=3)

    # then: age cells lose (2 - 1) / (4 - 1), sex cells 0; suppressed rows lose 1
    assert kept == pytest.approx((1 / 3 + 0) / 2)
    assert suppressed == pytest.approx(1.0)


def test_when_nothing_is_generalized_then_the_loss_is_zero_and_at_the_top_it_is_one() -> None:
    # given
    frame = _small_table(seed=1)
    raw = dict.fromkeys(SMALL_QIS, 0)
    top = {column: hierarchy_height(h) - 1 for column, h in SMALL_QIS.items()}

    # when
    raw_loss = information_loss(frame, quasi_identifiers=SMALL_QIS, levels=raw, k=1)
    top_loss = information_loss(frame, quasi_identifiers=SMALL_QIS, levels=top, k=1)

    # then
    assert raw_loss == 0.0
    assert top_loss == pytest.approx(1.0)


# --------------------------------------------------------------------------- search


@pytest.mark.parametrize(("seed", "k", "max_suppression"), [(3, 2, 0.0), (4, 3, 0.1), (5, 5, 0.05)])
def test_when_searching_then_the_release_is_k_anonymous_by_an_independent_count(
    seed: int, k: int, max_suppression: float
) -> None:
    # given
    frame = _small_table(seed=seed, rows=60)

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=SMALL_QIS, k=k, max_suppression=max_suppression
    )
    released, suppressed = apply_generalization(
        frame, quasi_identifiers=SMALL_QIS, levels=result.levels, k=k
    )

    # then
    classes = _row_classes(released, list(SMALL_QIS))
    assert min(classes.values()) >= k
    assert min(classes.values()) == result.k_achieved
    assert suppressed == result.suppressed_rows == len(frame) - len(released)
    assert suppressed <= max_suppression * len(frame)
    assert released["income"].tolist() == frame.loc[released.index, "income"].tolist()


@pytest.mark.parametrize(
    ("seed", "k", "max_suppression"),
    [(11, 2, 0.0), (14, 2, 0.1), (26, 2, 0.0), (30, 3, 0.1), (33, 2, 0.05)],
)
def test_when_the_whole_lattice_is_brute_forced_then_the_search_found_the_least_loss(
    seed: int, k: int, max_suppression: float
) -> None:
    # given
    frame = _small_table(seed=seed)

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=SMALL_QIS, k=k, max_suppression=max_suppression
    )

    # then
    best_levels, best_loss = _brute_force_optimum(
        frame, SMALL_QIS, k=k, max_suppression=max_suppression
    )
    assert result.levels == best_levels
    assert result.information_loss == pytest.approx(best_loss, abs=1e-9)
    assert result.nodes_evaluated < math.prod(hierarchy_height(h) for h in SMALL_QIS.values())


def test_when_one_outlier_may_be_suppressed_then_it_is_removed_instead_of_generalizing() -> None:
    # given: twenty 30-year-olds and one 90-year-old
    frame = pd.DataFrame({"age": [30] * 20 + [90]})
    qis: dict[str, Hierarchy] = {"age": AGE}

    # when
    strict = find_k_anonymous_generalization(frame, quasi_identifiers=qis, k=2, max_suppression=0.0)
    lenient = find_k_anonymous_generalization(
        frame, quasi_identifiers=qis, k=2, max_suppression=0.05
    )

    # then
    assert strict.levels == {"age": 4}
    assert strict.suppressed_rows == 0
    assert lenient.levels == {"age": 0}
    assert lenient.suppressed_rows == 1
    assert lenient.information_loss < strict.information_loss


def test_when_the_budget_is_one_row_short_then_the_search_generalizes_instead() -> None:
    # given: two lone rows, a budget of one row
    frame = pd.DataFrame({"age": [30] * 18 + [90, 91]})
    qis: dict[str, Hierarchy] = {"age": AGE}

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=qis, k=2, max_suppression=0.05
    )

    # then
    assert result.suppressed_rows <= 1
    assert result.levels["age"] > 0
    assert result.k_achieved >= 2


def test_when_k_exceeds_the_rows_and_nothing_may_be_suppressed_then_k_is_reported_honestly() -> (
    None
):
    # given
    frame = _small_table(seed=2, rows=3)

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=SMALL_QIS, k=5, max_suppression=0.0
    )

    # then: the top node, its one class of 3 rows, and the gate will see 3 < 5
    assert result.levels == {column: hierarchy_height(h) - 1 for column, h in SMALL_QIS.items()}
    assert result.k_achieved == 3
    assert result.k_target == 5
    assert result.suppressed_rows == 0
    assert result.total_rows == 3


def test_when_k_is_one_then_every_quasi_identifier_stays_raw() -> None:
    # given
    frame = _small_table(seed=6)

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=SMALL_QIS, k=1, max_suppression=0.0
    )

    # then
    assert result.levels == dict.fromkeys(SMALL_QIS, 0)
    assert result.information_loss == 0.0
    assert result.suppressed_rows == 0


def test_when_the_table_is_empty_then_the_top_node_reports_k_zero() -> None:
    # given
    frame = _small_table(seed=7).iloc[:0]

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=SMALL_QIS, k=5, max_suppression=0.02
    )

    # then
    assert result.k_achieved == 0
    assert result.total_rows == 0
    assert result.levels == {column: hierarchy_height(h) - 1 for column, h in SMALL_QIS.items()}


def test_when_a_quasi_identifier_column_is_missing_then_config_error_names_it() -> None:
    # given
    frame = _small_table(seed=8).drop(columns=["zip_code"])

    # when / then
    with pytest.raises(ConfigError, match="zip_code"):
        find_k_anonymous_generalization(
            frame, quasi_identifiers=SMALL_QIS, k=2, max_suppression=0.0
        )


@pytest.mark.parametrize(("k", "max_suppression"), [(0, 0.0), (2, -0.1), (2, 1.5)])
def test_when_k_or_the_suppression_share_is_out_of_range_then_config_error(
    k: int, max_suppression: float
) -> None:
    # given
    frame = _small_table(seed=9)

    # when / then
    with pytest.raises(ConfigError, match=r"anonymization\.(k|max_suppression)"):
        find_k_anonymous_generalization(
            frame, quasi_identifiers=SMALL_QIS, k=k, max_suppression=max_suppression
        )


def test_when_a_result_is_returned_then_its_labels_describe_the_levels() -> None:
    # given: pairs only form at ages 30-39, ZIP 021** and the raw sex (loss 2/3); the
    # all-star age and ZIP tie on loss but sit higher in the lattice
    frame = pd.DataFrame(
        {
            "age": [31, 38, 32, 39],
            "zip_code": ["02139", "02138", "02137", "02136"],
            "sex": ["F", "F", "M", "M"],
        }
    )
    qis: dict[str, Hierarchy] = {"age": AGE, "zip_code": ZIP, "sex": SEX}

    # when
    result = find_k_anonymous_generalization(frame, quasi_identifiers=qis, k=2, max_suppression=0.0)

    # then
    assert isinstance(result, KAnonymityResult)
    assert result.levels == {"age": 2, "zip_code": 1, "sex": 0}
    assert result.level_labels == {
        "age": "interval width 10",
        "zip_code": "prefix 3",
        "sex": "raw",
    }
    assert result.information_loss == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- real data


def test_when_the_adult_sample_is_anonymized_at_k5_then_every_class_has_five_rows() -> None:
    # given: 5,000 Adult rows and the demo config's hierarchies (zip_code is synthetic)
    config = load_config(PROJECT_ROOT / "configs" / "demo.yaml")
    qis = {
        column: hierarchy
        for column, hierarchy in config.anonymization.quasi_identifiers.items()
        if column != "zip_code"
    }
    frame = _adult_sample(5_000)

    # when
    result = find_k_anonymous_generalization(
        frame, quasi_identifiers=qis, k=5, max_suppression=config.anonymization.max_suppression
    )
    released, suppressed = apply_generalization(
        frame, quasi_identifiers=qis, levels=result.levels, k=5
    )

    # then
    assert len(qis) == 6
    assert result.k_achieved >= 5
    assert min(_row_classes(released, list(qis)).values()) >= 5
    assert measure_k(released, list(qis)) == result.k_achieved
    assert suppressed == result.suppressed_rows <= 0.02 * len(frame)
    assert result.information_loss == pytest.approx(
        information_loss(frame, quasi_identifiers=qis, levels=result.levels, k=5), abs=1e-9
    )
