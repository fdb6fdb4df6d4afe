"""The runtime: the application pipeline (``app``) with its admission (``admission``), reads for
the built-ins (``reads``) and process lifecycle (``lifecycle``); executions on Marvin's own job
pool, locks, control (cancel, drain, recover), the audit recorder and the durable store."""
