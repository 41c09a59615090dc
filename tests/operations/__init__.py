"""Operations: metrics, traces, logs, health, PgBouncer, Sentinel, Kubernetes."""
