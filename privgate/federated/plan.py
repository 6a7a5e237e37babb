"""The federation's settings, and the demo's split of the Adult table into silos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from privgate.errors import ConfigError


class SecAggConfig(BaseModel):
    """SecAgg+ (Bell et al. 2020) as Flower's `SecAggPlusWorkflow` runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_shares: int = Field(
        default=3, ge=3, le=1024, description="Shamir shares per silo's secrets (Flower: > 2)."
    )
    reconstruction_threshold: int = Field(
        default=2, ge=2, description="Shares needed to rebuild a dropped silo's masks."
    )
    clipping_range: float = Field(
        default=8.0, gt=0.0, description="Update values are clipped to +/- this before quantizing."
    )
    timeout: float = Field(default=300.0, gt=0.0, description="Seconds a stage waits for silos.")


class Silo(BaseModel):
    """One data holder: its name and its own tables (which never leave it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    train_path: Path = Field(description="The silo's training table, as the silo's host sees it.")
    test_path: Path = Field(description="The silo's test table, as the silo's host sees it.")
    deployment: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description=(
            "The Prefect deployment (flow/deployment) of the `federated-silo` flow on the "
            "silo's own work pool: its steps and its SuperNode run there. None: in the "
            "coordinator's process, with a SuperNode on loopback."
        ),
    )


class CoordinatorConfig(BaseModel):
    """Where the coordinator's SuperLink listens, and the address deployed silos dial."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="The SuperLink's bind address.")
    port: int = Field(default=0, ge=0, le=65535, description="Its port (0: any free port).")
    address: str | None = Field(
        default=None,
        description="host:port the silos' SuperNodes dial (default: host and port).",
    )


class FederatedPlan(BaseModel):
    """How many rounds, how much local training per round, and who takes part."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(default=3, ge=1, le=100, description="Federated rounds.")
    local_epochs: int = Field(default=1, ge=1, le=50, description="Local epochs per round.")
    min_silos: int | None = Field(
        default=None,
        ge=3,
        description=(
            "Silos a round needs (default: every silo); at least 3, since in a round of 2 "
            "each could subtract its own update from the global step and read the other's."
        ),
    )
    secagg: SecAggConfig = Field(default_factory=SecAggConfig)
    coordinator: CoordinatorConfig = Field(default_factory=CoordinatorConfig)
    # SecAgg+ needs 3: with 2 silos, each could subtract its own update from the sum.
    silos: list[Silo] = Field(min_length=3)
    source: Path | None = Field(
        default=None,
        description=(
            "The table the silos were split from, if any: its ledger entry is charged "
            "too, so splitting it again yields no fresh budget."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> FederatedPlan:
        names = [s.name for s in self.silos]
        if len(set(names)) != len(names):
            raise ValueError("silo names must be unique")
        if self.secagg.reconstruction_threshold >= self.secagg.num_shares:
            raise ValueError("secagg.reconstruction_threshold must be below secagg.num_shares")
        if self.secagg.num_shares > len(self.silos):
            raise ValueError(
                f"secagg.num_shares={self.secagg.num_shares} exceeds the {len(self.silos)} silos"
            )
        if self.min_silos is not None and self.min_silos > len(self.silos):
            raise ValueError(f"min_silos={self.min_silos} exceeds the {len(self.silos)} silos")
        if len({s.deployment is None for s in self.silos}) > 1:
            raise ValueError("either every silo names its deployment or none does")
        return self

    @property
    def deployed(self) -> bool:
        """Whether each silo runs on its own Prefect deployment (its own work pool)."""
        return self.silos[0].deployment is not None

    @property
    def plan_epochs(self) -> int:
        """Every local epoch of every round: what each silo's noise is calibrated for."""
        return self.rounds * self.local_epochs

    @property
    def required_silos(self) -> int:
        return self.min_silos or len(self.silos)


def _stratum(frame: pd.DataFrame) -> np.ndarray:
    """Return each row's region (the ZIP code's first digit, 0 when it has none)."""
    first = frame["zip_code"].astype(str).str.strip().str[:1]
    return pd.to_numeric(first, errors="coerce").fillna(0).astype(int).to_numpy()


def split_demo(
    train: Path, test: Path, out: Path, *, silos: int, seed: int = 11, skew: float = 0.7
) -> list[Silo]:
    """Split the demo tables into `silos` silos with different distributions.

    Each region (the ZIP code's first digit) goes mostly (`skew`) to one silo and the
    rest evenly to the others, so the silos differ the way regional branches do: in
    size, in their ZIP codes, and in everything that varies with them. Each silo
    gets its own train and test files; a row is in exactly one silo.

    Raises:
        ConfigError: for fewer than 3 silos.
    """
    if silos < 3:
        raise ConfigError(
            f"--silos must be at least 3 (got {silos}): with 2, each silo could subtract "
            "its own update from the secure sum and read the other's"
        )
    rng = np.random.default_rng(seed)
    names = [f"silo-{i + 1}" for i in range(silos)]
    parts: dict[str, dict[str, pd.DataFrame]] = {n: {} for n in names}
    for kind, path in (("train", train), ("test", test)):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        home = _stratum(frame) % silos
        other = rng.integers(0, silos, size=len(frame))
        owner = np.where(rng.random(len(frame)) < skew, home, other)
        for i, name in enumerate(names):
            parts[name][kind] = frame[owner == i]
    result = []
    for name in names:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for kind, frame in parts[name].items():
            paths[kind] = folder / f"{kind}.csv"
            frame.to_csv(paths[kind], index=False)
        result.append(Silo(name=name, train_path=paths["train"], test_path=paths["test"]))
    return result


def load_plan(path: Path | None, changes: dict[str, object] | None = None) -> FederatedPlan:
    """Read a federation YAML (or start empty) and apply `changes`; validate.

    Raises:
        ConfigError: naming the file and the first invalid field.
    """
    import yaml
    from pydantic import ValidationError

    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(
                f"cannot read the federation plan {path}: {type(error).__name__}"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"the federation plan {path} is not a mapping")
        data = loaded
    data = {**data, **(changes or {})}
    try:
        plan = FederatedPlan.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(
            f"federation plan {path or '(command line)'}: {where}: {first['msg']}"
        ) from None
    if path is not None and not plan.deployed:  # tables relative to the plan's folder
        # (a deployed silo's paths are its own host's, resolved there)
        base = path.resolve().parent
        plan = plan.model_copy(
            update={
                "silos": [
                    s.model_copy(
                        update={"train_path": base / s.train_path, "test_path": base / s.test_path}
                    )
                    for s in plan.silos
                ],
                "source": None if plan.source is None else base / plan.source,
            }
        )
    return plan
