"""``PolicyAuthorizer``: directory groups -> policy. Every failure refuses.

Who: the user arrives resolved by the front end it came through (``FrontEnds.resolve`` in the
core: Slack's ``users.info``, the local operator...), with ``via`` set to that front end's kind.
Groups come from the directory. What: the first matching rule of the policy decides, and the
rule's and the command's ``via`` must both admit ``user.via``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from marvin.core.authz import ChannelBook, Decision, command_vias, via_refusal, with_groups
from marvin.core.model import User
from marvin.core.registry import Command
from marvin.security.directory import Directory
from marvin.security.policy import Policy, Rule, is_builtin

__all__ = ["PolicyAuthorizer"]

log = structlog.get_logger("marvin.security")


class PolicyAuthorizer:
    def __init__(
        self,
        policy: Policy,
        directory: Directory,
        *,
        auditors_group: str | None = None,
    ) -> None:
        self.policy = policy
        self.directory = directory
        self.auditors_group = auditors_group.lower() if auditors_group else None
        self.table: list[Command] = []

    def check_table(self, table: Iterable[Command], *, strict: bool = True) -> None:
        """Remember the table (for ``describe``) and validate the policy against it. Not
        strict for a table that is not the deployed one (the test harness): unknown refs are
        then only logged, while "no matching rule: refused" still holds."""
        self.table = list(table)
        if strict:
            self.policy.check(self.table)
        else:
            try:
                self.policy.check(self.table)
            except ValueError as exc:
                log.warning("policy does not fit this command table", problems=str(exc))

    # -- who ----------------------------------------------------------------------------------

    def identify(self, user: User, *, fresh: bool = False) -> User:
        return with_groups(user, self.directory, fresh=fresh)

    def is_auditor(self, user: User) -> bool:
        return bool(self.auditors_group) and self.auditors_group in {g.lower() for g in user.groups}

    def channels(self) -> ChannelBook:
        return self.policy.channels

    # -- what ---------------------------------------------------------------------------------

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision:
        if user.via is None:  # not resolved through a registered front end
            return via_refusal(cmd, None, ())
        if is_builtin(cmd):  # help, whoami, jobs, cancel, history, status: everyone identified
            return Decision(True, confirm=cmd.spec.confirm, mfa=cmd.spec.mfa)
        rule = self.policy.first(cmd, params)
        where = self.policy.path.name
        if rule is None:
            decision = Decision(False, f"No rule in {where} allows `{cmd.ref}`; you can't run it.")
        elif not rule.admits(user.groups):
            decision = Decision(False, _refusal(rule, cmd, where))
        elif user.via not in (allowed := rule.via & command_vias(cmd)):
            decision = via_refusal(cmd, user.via, allowed)
            if rule.reason:
                decision = replace(decision, reason=f"{rule.reason} {decision.reason}")
        elif user.via == "chat" and not self.policy.in_channel(rule, user.where):
            # Channel scoping (``channels:``) applies to chat; the CLI and API have no channel.
            decision = Decision(False, _wrong_channel(rule, cmd, user, where))
        else:
            decision = Decision(
                True,
                mfa=rule.mfa or cmd.spec.mfa,
                confirm=rule.confirm or cmd.spec.confirm,
                checks=rule.checks,
                approve=rule.approve,
            )
            if cmd.spec.inline and (decision.mfa or decision.confirm or decision.approve):
                # Inline commands skip the confirm and MFA steps: refuse rather than run unchecked.
                decision = Decision(False, f"`{cmd.ref}` needs a check that inline commands skip.")
        # debug: every message passes here; the audit row already records refusals.
        log.debug(
            "policy decision",
            user=user.id,
            email=user.email,
            ref=cmd.ref,
            rule=rule.label if rule else None,
            allowed=decision.allowed,
            mfa=decision.mfa,
            confirm=decision.confirm,
        )
        return decision

    def visible(self, user: User, cmd: Command) -> bool:
        """Shown in ``help`` if some parameter values would let ``user`` run it from here."""
        if is_builtin(cmd):
            return True
        if user.via not in command_vias(cmd):
            return False
        return any(self._usable(user, r) for r in self.policy.candidates(cmd))

    def describe(self, user: User) -> list[str]:
        """Lines for ``whoami``: what needs a Duo push or confirmation, what is CLI-only."""
        needs: dict[str, list[str]] = {"mfa": [], "confirm": [], "cli": [], "approve": []}
        count = 0
        for cmd in self.table:
            if is_builtin(cmd):
                continue
            usable = False
            for rule in self.policy.candidates(cmd):
                if not rule.admits(user.groups):
                    continue
                when = f" ({rule.describe_targets()})" if rule.targets else ""
                if "chat" not in rule.via & command_vias(cmd):
                    needs["cli"].append(cmd.ref + when)
                if rule.mfa or cmd.spec.mfa:
                    needs["mfa"].append(cmd.ref + when)
                if rule.confirm or cmd.spec.confirm:
                    needs["confirm"].append(cmd.ref + when)
                if rule.approve:
                    needs["approve"].append(cmd.ref + when)
                usable = usable or self._usable(user, rule)
            count += usable
        lines = [f"You may run {count} command(s) besides the built-ins (say `help`)."]
        for key, title in (
            ("mfa", "Needs a Duo push"),
            ("confirm", "Asks you to confirm"),
            ("cli", "Command line only, never from chat"),
            ("approve", "Needs another person's approval"),
        ):
            if needs[key]:
                lines.append(f"{title}: " + ", ".join(needs[key]))
        if self.is_auditor(user):
            lines.append("You are an auditor: `history N all` and `status` show everyone's.")
        return lines

    def _usable(self, user: User, rule: Rule) -> bool:
        return rule.admits(user.groups) and user.via in rule.via


def _wrong_channel(rule: Rule, cmd: Command, user: User, where: str) -> str:
    here = "a direct message" if user.where and user.where.dm else "this channel"
    return (
        f"`{cmd.ref}` can't be run from {here} ({where}, {rule.label}); "
        f"ask in {rule.describe_channels()}."
    )


def _refusal(rule: Rule, cmd: Command, where: str) -> str:
    if rule.deny:
        return rule.reason or f"Nobody may run `{cmd.ref}` like that ({where}, {rule.label})."
    needed = ", ".join(sorted(rule.groups))
    scope = f" with {rule.describe_targets()}" if rule.targets else ""
    return (
        f"You're not allowed to run `{cmd.ref}`{scope}: it needs membership of {needed} "
        f"({where}, {rule.label})."
    )
