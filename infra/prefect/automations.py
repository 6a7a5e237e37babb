"""Create the team stack's Prefect automations (idempotent): `python infra/prefect/automations.py`.

**Crash zombie flow runs.** A worker host that dies (kill -9, a lost machine, an evicted
pod) leaves its flow run `Running` forever: nothing is left to report its end. Flow runs
from the deployments emit a heartbeat every 30 s (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` in
`prefect.yaml`'s work-pool variables); this automation marks a run `Crashed` when no
heartbeat and no final state followed its last heartbeat within 90 s, as Prefect's
"detect zombie flows" guide does (Prefect Cloud ships it as a managed automation). A
crashed run keeps its ledger debit and never promoted anything: promotion is its last
step. Run against `PREFECT_API_URL`; the compose stack runs it once the server is up.
"""

from __future__ import annotations

from datetime import timedelta

ZOMBIE_AUTOMATION = "privgate: crash zombie flow runs"
ZOMBIE_AFTER = timedelta(seconds=90)  # three missed heartbeats


def ensure_automations() -> list[str]:
    """Create the automations this stack relies on unless present; return their names."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
    except ValueError:  # not found
        Automation(
            name=ZOMBIE_AUTOMATION,
            description="Mark a flow run Crashed when its heartbeats stop (worker lost).",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={
                    "prefect.flow-run.heartbeat",
                    "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed",
                },
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=ZOMBIE_AFTER,
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=(
                        f"no heartbeat for {int(ZOMBIE_AFTER.total_seconds())} s: the worker "
                        "running it was lost"
                    ),
                )
            ],
        ).create()
    return [ZOMBIE_AUTOMATION]


if __name__ == "__main__":
    for name in ensure_automations():
        print(f"automation ready: {name}")
