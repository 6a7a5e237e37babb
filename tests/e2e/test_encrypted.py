"""End to end: an HE-ready model trained and promoted, then scored on ciphertexts.

The real CLI trains `mlp_poly` through DP-SGD, the audit and the gates; `privgate
encrypted serve` loads the champion through the consumer's checks on loopback; a client
process encrypts the whole Adult test file, the server scores it without the secret key,
and the client's decrypted scores match the plaintext model's. A version the gates
rejected is refused even when an alias is moved onto it by hand.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privgate.data.demo_data import write_demo_data
from tests.e2e.cli_runner import Run, run_cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAME = "privgate-adult-income"
HE_MODEL = ["--set", "training.model=mlp_poly", "--set", "training.hidden_units=16"]
# Planted in the records the client scores: an identifier column the model never reads,
# and a category it does not know. Neither may reach the server.
CANARY_NAME = "Quorvath Zelbrandt"
CANARY_COUNTRY = "Zorblax-CANARY-4417"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PRIVGATE_HOME": str(home)}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(key, None)
    return env


def _serve(home: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "privgate.cli",
            "encrypted",
            "serve",
            NAME,
            "--port",
            str(port),
            *list(args),
        ],
        cwd=ROOT,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return server, url
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError("the encrypted-scoring server did not start in 120 s")


def _stop(server: subprocess.Popen) -> str:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return server.communicate()[0] or ""


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("privgate-he")
    _, test = write_demo_data(home / "demo")  # the whole Adult test file: 16,281 records
    records = pd.read_csv(test, dtype=str, keep_default_na=False)
    records.loc[5, "full_name"] = CANARY_NAME
    records.loc[6, "native_country"] = CANARY_COUNTRY
    to_score = home / "to_score.csv"
    records.to_csv(to_score, index=False)

    promoted = run_cli(home, "run", "--json", *HE_MODEL)
    rejected = run_cli(home, "run", "--json", *HE_MODEL, "--set", "training.dp.enabled=false")
    server, url = _serve(home)
    try:
        client = run_cli(
            home, "encrypted", "score", "--url", url, "--in", str(to_score),
            "--out", str(home / "scores.csv"), "--json",
        )  # fmt: skip
        spy = _spy_on_the_wire(home, url, to_score)
    finally:
        server_log = _stop(server)
    return {
        "home": home,
        "records": records,
        "to_score": to_score,
        "promoted": promoted,
        "rejected": rejected,
        "client": client,
        "spy": spy,
        "server_log": server_log,
        "plain": _plain_scores(home, to_score),
    }


def _plain_scores(home: Path, to_score: Path) -> pd.DataFrame:
    """The champion's plaintext scores, loaded through the consumer in another process."""
    out = home / "plain.csv"
    script = (
        "import sys, pandas as pd\n"
        "from privgate.home import configure_state_environment\n"
        "configure_state_environment()\n"
        "from privgate.registry.consumer import load_approved_model\n"
        f"model = load_approved_model({NAME!r})\n"
        "frame = pd.read_csv(sys.argv[1])\n"
        "model.predict(frame).to_csv(sys.argv[2], index=False)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(to_score), str(out)],
        cwd=ROOT,
        env=_env(home),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return pd.read_csv(out)


def _spy_on_the_wire(home: Path, url: str, to_score: Path) -> dict[str, object]:
    """Score 50 records in a client process that records every request body it sends."""
    script = (
        "import json, sys, httpx, pandas as pd, tenseal as ts\n"
        "from privgate.encrypted import EncryptedScorer\n"
        "bodies = []\n"
        "http = httpx.Client(base_url=sys.argv[1], timeout=300,\n"
        "    event_hooks={'request': [lambda r: bodies.append((r.url.path, r.read()))]})\n"
        "frame = pd.read_csv(sys.argv[2]).head(50)\n"
        "EncryptedScorer(http=http).score(frame)\n"
        "contexts = [ts.context_from(b) for p, b in bodies if p == '/v1/contexts']\n"
        "wire = b''.join(b for _, b in bodies)\n"
        "print(json.dumps({\n"
        "    'contexts': len(contexts),\n"
        "    'private': [c.is_private() or c.has_secret_key() for c in contexts],\n"
        "    'scores': sum(p == '/v1/score' for p, _ in bodies),\n"
        "    'canaries': [n for n in sys.argv[3:] if n.encode() in wire],\n"
        "}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url, str(to_score), CANARY_NAME, CANARY_COUNTRY, "Quorvath"],
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_when_an_he_ready_model_is_trained_then_it_is_promoted_with_its_agreement(
    scored: dict,
) -> None:
    promoted: Run = scored["promoted"]
    assert promoted.code == 0, promoted.stderr[-3000:]
    assert promoted.json()["promoted"] is True
    home = Path(scored["home"])
    specs = sorted(home.glob("mlartifacts/**/artifacts/model_spec.json"))
    evidence = [json.loads(p.read_text()).get("encrypted_inference") for p in specs]
    # Both versions (the champion and the one trained without DP) were measured.
    assert len(evidence) == 2
    assert all(e["records"] == 4096 and e["ready"] is True for e in evidence)
    assert all(e["max_abs_probability_difference"] <= 1e-3 for e in evidence)
    cards = sorted(home.glob("mlartifacts/**/model_card/v1.md"))
    assert cards
    assert "**HE-ready**" in cards[0].read_text()


def test_when_the_test_file_is_scored_encrypted_then_it_matches_plaintext(scored: dict) -> None:
    client: Run = scored["client"]
    assert client.code == 0, client.stderr[-3000:]
    summary = client.json()
    records = scored["records"]
    assert summary["records"] == len(records) > 16_000  # the whole Adult test file
    encrypted = pd.read_csv(Path(scored["home"]) / "scores.csv")
    plain = scored["plain"]
    assert len(encrypted) == len(plain) == len(records)
    difference = np.abs(encrypted["probability"].to_numpy() - plain["probability"].to_numpy())
    same_class = np.mean(encrypted["prediction"].to_numpy() == plain["prediction"].to_numpy())
    assert difference.max() <= 1e-3
    assert same_class >= 0.999


def test_when_the_client_scores_then_the_server_gets_no_key_and_no_record(scored: dict) -> None:
    spy = scored["spy"]
    assert spy["contexts"] == 1
    assert spy["private"] == [False]
    assert spy["scores"] == 1  # 50 records, one batch
    assert spy["canaries"] == []
    server_log = scored["server_log"]
    assert "POST /v1/score" in server_log
    assert "scored a batch of" in server_log
    assert "Quorvath" not in server_log
    assert "CANARY" not in server_log
    written = (Path(scored["home"]) / "scores.csv").read_text()
    assert "Quorvath" not in written
    assert "CANARY" not in written


def test_when_an_alias_is_moved_onto_a_rejected_version_then_serving_refuses(
    scored: dict,
) -> None:
    rejected: Run = scored["rejected"]
    assert rejected.code == 2
    assert rejected.json()["promoted"] is False
    home = Path(scored["home"])
    script = (
        "from privgate.home import configure_state_environment\n"
        "configure_state_environment()\n"
        "from privgate.registry.versions import configure_mlflow\n"
        "configure_mlflow()\n"
        "from mlflow.tracking import MlflowClient\n"
        f"MlflowClient().set_registered_model_alias({NAME!r}, 'rogue', '2')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=_env(home), check=True, timeout=120
    )
    server, _ = _serve(home, "--alias", "rogue")
    output = _stop(server)
    assert server.returncode == 2
    assert "refused" in output
    assert "not approved" in output
