"""The project's chaos test (`make chaos`): nothing lost, nothing stuck, under kill -9s and outages. See run.py."""
