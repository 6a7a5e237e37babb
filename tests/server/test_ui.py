"""The Prefect UI, in a real headless Chromium: a person starts `manual-training` from the form.

The browser opens the UI the test's Prefect server serves, goes to the deployments list,
opens `manual-training`, chooses Run > Custom run, sees the config form (field help, the
accountant dropdown), changes the accountant and the experiment, and submits. The run must
complete on the worker with exactly those values. Screenshots of the filled form and the
finished run go to `$PRIVGATE_UI_SCREENSHOTS` (CI keeps them), else the test's folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.server.stack import Stack

pytestmark = pytest.mark.server


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PRIVGATE_UI_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_when_a_person_starts_manual_training_from_the_ui_then_the_run_completes(
    chromium: str, stack: Stack, screenshots: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    deployment = stack.deployment_id("privacy-gated-training/manual-training")
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI runs as root).
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(60_000)

        # given: the UI, its deployments list, the deployment
        page.goto(stack.prefect_url + "/")
        page.get_by_role("link", name="Deployments", exact=True).first.click()
        page.get_by_role("link", name="manual-training", exact=True).click()
        page.wait_for_url(re.compile(f"/deployments/deployment/{deployment}"))
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()
        page.wait_for_url(re.compile(f"/deployments/deployment/{deployment}/run"))

        # then: the typed config is a form, with each field's help and choices as dropdowns
        page.get_by_text("Accountant (Optional)", exact=True).wait_for()
        expect(page.get_by_text("Opacus privacy accountant.", exact=True)).to_be_visible()
        accountant = page.get_by_role("button", name="Select Accountant", exact=True)
        expect(accountant).to_have_text("prv")
        accountant.click()
        options = page.get_by_role("listbox").get_by_role("option")
        expect(options).to_have_text(["prv", "rdp", "gdp"])

        # when: the person picks another accountant, names the experiment and submits
        page.get_by_role("option", name="rdp", exact=True).click()
        expect(accountant).to_have_text("rdp")
        experiment = page.get_by_label("Experiment (Optional)", exact=True)
        experiment.fill("privgate-from-the-ui")
        page.screenshot(path=str(screenshots / "manual-training-form.png"), full_page=True)
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/create_flow_run")
        ) as created:
            page.get_by_role("button", name="Submit", exact=True).click()
        assert created.value.ok, created.value.text()
        flow_run = created.value.json()["id"]
        final = stack.wait_for_run(flow_run)

        page.goto(f"{stack.prefect_url}/v2/runs/flow-run/{flow_run}")
        expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
        page.screenshot(path=str(screenshots / "manual-training-completed.png"), full_page=True)
        browser.close()

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    config = final["parameters"]["config"]
    assert config["training"]["dp"]["accountant"] == "rdp"
    assert config["registry"]["experiment"] == "privgate-from-the-ui"
    assert (screenshots / "manual-training-completed.png").stat().st_size > 10_000


def test_when_an_approver_fills_the_approval_form_in_the_ui_then_the_run_resumes_promoted(
    chromium: str, stack: Stack, screenshots: Path
) -> None:
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    from privgate.registry import attestation
    from tests.server.test_approval import (
        APPROVER,
        own_data_config,
        reviewed_policy,
        start_approved_training,
        wait_paused,
    )

    model = "privgate-approval-ui"
    policy = reviewed_policy(stack, "policy-approval-ui.yaml", model=model)
    run_id = start_approved_training(stack, own_data_config(stack, seed=13), policy)
    wait_paused(stack, run_id)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(60_000)

        # given: the paused run, its Resume dialog with the evidence and the form
        page.goto(f"{stack.prefect_url}/runs/flow-run/{run_id}")
        page.get_by_role("button", name="Resume").first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Every privacy gate passed", exact=False)).to_be_visible()
        expect(dialog.get_by_text("Evidence SHA-256", exact=False)).to_be_visible()
        boxes = dialog.locator("textarea")  # approver, rationale, evidence (filled in)
        expect(boxes.nth(2)).to_have_value(re.compile("^[0-9a-f]{64}$"))

        # when: the approver types their name, picks approve, gives a rationale, submits
        boxes.nth(0).fill(APPROVER)
        decision = dialog.locator(".p-select-button__control")
        decision.click()
        if not page.get_by_role("listbox").is_visible():
            decision.press("ArrowDown")
        page.get_by_role("option", name="approve", exact=True).click()
        boxes.nth(1).fill("approved from the UI: epsilon 3, k 5, audit within bounds")
        page.screenshot(path=str(screenshots / "approval-form.png"), full_page=True)
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/resume")
        ) as resumed:
            dialog.get_by_role("button", name="Submit", exact=True).click()
        assert resumed.value.ok, resumed.value.text()
        final = stack.wait_for_run(run_id)

        page.goto(f"{stack.prefect_url}/runs/flow-run/{run_id}")
        expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
        page.screenshot(path=str(screenshots / "approval-completed.png"), full_page=True)
        browser.close()

    # then: the version is the champion, and its attestation names the approver
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    champion = client.get_model_version_by_alias(model, "champion")
    statement = client.download_artifacts(
        champion.run_id, f"attestation/v{champion.version}.json", str(stack.root)
    )
    signed = attestation.Attestation.from_payload(Path(statement).read_bytes())
    assert signed.approval is not None
    assert signed.approval["approver"] == APPROVER
    assert "from the UI" in signed.approval["rationale"]
    assert (screenshots / "approval-completed.png").stat().st_size > 10_000
