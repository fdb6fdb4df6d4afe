"""The runtime: the application pipeline (``app``), executions on Marvin's own job pool, locks,
control (cancel, drain, recover), the audit recorder and the durable store."""
