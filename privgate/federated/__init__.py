"""Federated training across data silos, under the same gates as central training.

- `privgate.federated.plan`: the federation's settings and the demo's silo split;
- `privgate.federated.silo`: what runs inside a silo, on its own table (the data stages,
  its DP-SGD rounds, its ledger entry, its audit); only aggregates leave it;
- `privgate.federated.runtime`: Flower's Deployment Engine on loopback (a SuperLink and
  one SuperNode per silo, as processes), started and stopped around a run;
- `privgate.federated.evidence`: the global view the gates judge, and the silos'
  evidence for the attestation;
- `privgate/federated/app/`: the Flower app (ServerApp with SecAgg+, ClientApp), which
  runs in Flower's own environment (`make install` creates `.venv-flower`: flwr 1.42
  pins fastapi<0.139, Prefect 3.8.8 needs >=0.139, so they cannot share one).
"""
