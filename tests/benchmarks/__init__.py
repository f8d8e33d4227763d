"""The benchmark: `python -m tests.benchmarks.run [--out PATH]` (or `make bench`). Not part of the test suite.

- `workload`: the deterministic CDC workload (Pub/Sub Avro or CometD JSON);
- `stage`: one role (ingest, relay, projector, the raw and naive baselines, or all three roles together for
  the end-to-end latency pass) in its own process, so each reports its own peak RSS;
- `run`: the orchestration (databases, topics, stages, figures, table, JSON).
"""
