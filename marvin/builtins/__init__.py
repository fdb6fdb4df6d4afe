"""Built-in chat commands (help, whoami, jobs, cancel, history, status), loaded like a
commands folder: each module lists its ``@command`` functions in ``HANDLERS``."""
