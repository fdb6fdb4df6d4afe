"""The security chain: Slack identity -> email -> directory groups -> policy -> Duo push.

``build_authorizer(config)`` is the entry point for the application, ``build_slack_identity`` the
Slack front end's identity resolver; see
``marvin.security.settings`` for the ``security:`` configuration and ``config/rbac.yaml`` for
the policy format. Everything fails closed.
"""

from marvin.security.settings import (
    build_authorizer,
    build_directory,
    build_second_factor,
    build_slack_identity,
)

__all__ = ["build_authorizer", "build_directory", "build_second_factor", "build_slack_identity"]
