"""Instrumentation at the edges: metrics, logs, traces, Sentry."""
