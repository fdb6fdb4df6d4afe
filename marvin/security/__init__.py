"""The security chain: Slack identity -> email -> directory groups -> policy -> Duo push.

``build_authorizer(config, slack_client=None)`` is the one entry point for front ends; see
``marvin.security.settings`` for the ``security:`` configuration and ``config/rbac.yaml`` for
the policy format. Everything fails closed.
"""

from marvin.security.settings import build_authorizer, build_directory, build_second_factor

__all__ = ["build_authorizer", "build_directory", "build_second_factor"]
