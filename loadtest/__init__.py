"""Load scenarios (Locust) and the one-run benchmark for NuxTest; see docs/capacity.md."""
