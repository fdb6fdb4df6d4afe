"""The front-end-neutral core: the command model, parameter types, the alias language, the
command table and matcher, help text, and the authorization contract. No I/O and no imports
from ``runtime``, ``frontends``, ``security`` or ``commands`` (like Flask's ``sansio``)."""
