"""A table the repository does not ship, for the own-data path (`privgate init`).

A clinic's readmission records: other columns, other names and another target than the
Adult demo, with identifiers in their own columns and in a free-text note, and a label
that depends on the attributes (so a DP model can beat the majority class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker

REGIONS = ("North", "South", "East", "West", "Central")
PLANS = ("Basic", "Silver", "Gold")


def clinic_table(rows: int, *, seed: int = 11) -> pd.DataFrame:
    """Return `rows` synthetic patients with a `readmitted` yes/no label."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    age = rng.integers(18, 91, rows)
    visits = rng.poisson(3, rows)
    bmi = np.round(rng.normal(27, 5, rows).clip(15, 55), 1)
    smoker = rng.random(rows) < 0.25
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    logit = -2.2 + 0.07 * (age - 50) + 0.7 * (visits - 3) + 2.0 * smoker + 0.12 * (bmi - 27)
    readmitted = rng.random(rows) < 1 / (1 + np.exp(-logit))
    names = [fake.name() for _ in range(rows)]
    phones = [f"07{rng.integers(100, 999)} {rng.integers(100000, 999999)}" for _ in range(rows)]
    notes = [
        f"Seen for follow-up; {rng.integers(1, 9)} medications reviewed with the patient."
        if i % 2
        else f"Called {names[i]} on {phones[i]} to confirm the next appointment slot."
        for i in range(rows)
    ]
    return pd.DataFrame(
        {
            "patient_name": names,
            "email": [f"{n.lower().replace(' ', '.')}@example.org" for n in names],
            "phone": phones,
            "age": age,
            "sex": rng.choice(["F", "M"], rows),
            "region": rng.choice(REGIONS, rows),
            "plan": plan,
            "visits_last_year": visits,
            "bmi": bmi,
            "smoker": np.where(smoker, "yes", "no"),
            "clinician_note": notes,
            "readmitted": np.where(readmitted, "yes", "no"),
        }
    )


def write_clinic_table(path: Path, rows: int, *, seed: int = 11) -> Path:
    """Write the table as CSV; return the path."""
    clinic_table(rows, seed=seed).to_csv(path, index=False)
    return path
