"""The API's ``FrontEnd``: a request's user is ``api:<key id>``, and the resolver vouches for
it by reading the key afresh (revoked or expired since: refused) and naming its owner. The
owner's groups are then looked up in the directory like a chat user's (``Marvin.identify``),
so a key is worth no more than its owner today."""

from __future__ import annotations

from dataclasses import replace

from marvin.core.apikeys import ApiKey, KeyRefused, KeyRing, user_id
from marvin.core.authz import FrontEnd, Refused
from marvin.core.model import User

__all__ = ["ApiIdentity", "NAME", "api_user"]

NAME = "api"  # the front end's registered name (User.source)


def api_user(key: ApiKey) -> User:
    """The user as the API saw it: only the key id; the resolver fills in the owner."""
    return User(id=user_id(key.id), email=None, name=key.name, source=NAME)


class ApiIdentity:
    """Registered before the application exists (``build_app(frontends=...)``); the key ring
    is attached once it does. Until then every request is refused (fails closed)."""

    def __init__(self) -> None:
        self._keys: KeyRing | None = None
        self.front_end = FrontEnd(NAME, "api", self.resolve)

    def attach(self, keys: KeyRing) -> None:
        self._keys = keys

    def resolve(self, user: User) -> User:
        key_id = user.id.removeprefix("api:")
        if self._keys is None or not user.id.startswith("api:"):
            raise Refused("I can't tell who you are.", f"not an API key user: {user.id}")
        try:
            key = self._keys.check(key_id)
        except KeyRefused as exc:
            raise Refused(str(exc), f"api key {key_id}: {exc.problem}") from None
        return replace(user, email=key.owner, name=key.name)
