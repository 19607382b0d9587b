"""What andon tells operators: the facts each layer reports (observe), and what becomes of
them — Prometheus metrics (metrics), OpenTelemetry spans (tracing), log lines (logs),
joined in one Observer (hub). observe, tracing and logs import nothing of andon above the
protocol, so every layer may use them; metrics and hub are wired at the top (node)."""
