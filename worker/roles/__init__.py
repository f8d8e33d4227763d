"""The role runtimes: ingest, resync, relay, projector and what they share. Built by bootstrap, run by the CLI;
they never import either."""
