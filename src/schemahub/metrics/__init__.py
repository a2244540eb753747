"""Run history, metrics (Prometheus, CloudWatch EMF) and the dashboard they feed."""
