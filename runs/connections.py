"""Runtime connections: a tool acts with its end user's own OAuth account.

A tool whose definition names a provider (``ToolSpec.connection``) needs the end user's
token (``connection_token``: refreshed when expired). Without one, the loop asks for an
authorization (``request_connection``: an attempt, reused while one is pending for the same
user and provider) and the run pauses. The user then links (``link_connection``: a fresh
link, through Genie) or rejects (``reject_connection``). A link opens only for whom it
was issued to (``requester_of``): a signed-in user's session's link in a browser signed in
to Genie as that user, a publishable key visitor's with that session's client secret; a
link sent to someone else, opened or not, is refused. Opening the link (``open_link``)
binds it to that browser (a cookie) and sends it to the provider, which sends it back to
the callback (``complete_connection``): only the browser that opened the link completes
it (a provider URL copied elsewhere is no use); the code is exchanged, the tokens are stored
encrypted, the attempt is authorized and the waiting calls are released; the last
release of a run enqueues its continuation, whose worker streams
``data-connection-auth-success`` and runs the tool with the token.

Writes here are services (keyword-only, atomic); one-row transitions are on the models.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.db import transaction

from chat.models import Agent, Session
from genie.encryption import reencrypt
from genie.links import absolute_url
from genie.models import AccessToken
from runs.exceptions import (
    ConnectionAttemptClosed,
    ConnectionLinkNotForThisBrowser,
    InvalidConnectionState,
    UnboundConnectionLink,
)
from runs.models import Connection, ConnectionAttempt, ConnectionProvider, Run, ToolCall
from runs.oauth import OAuthClient, OAuthFailure, new_code_verifier
from runs.services import continue_when_answered

logger = logging.getLogger(__name__)

DECLINED = "connection declined"


class ConnectionUnavailable(Exception):
    """The call cannot get a token now and asking the user would not help (no such
    provider, no end user, the provider unreachable): the call fails with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AuthLink:
    url: str
    expires_at: datetime


def end_user_of(session: Session) -> str:
    """Whose account a connection tool acts with, as far as the caller that created the
    session can vouch for it: a signed-in user is itself (its member uuid; a ``user_id``
    it sent is not proof of anything); a secret key, a server, names its end user in
    ``user_id``; a publishable key's visitor is only the visitor of this session (anyone
    can send any ``user_id`` from a browser, so its connections serve this session
    alone). '' when the session names no end user."""
    if session.owner_id:
        member = getattr(session.owner, "member", None)
        return str(member.uuid) if member is not None else ""
    token = session.created_by_token
    if token is not None and token.kind == AccessToken.Kind.PUBLISHABLE:
        return f"session:{session.uuid}"
    return session.user_id


def callback_url() -> str:
    """The ``redirect_uri`` to register at every provider: GENIE_PUBLIC_URL + the callback path."""
    return absolute_url(None, "runs:connection-callback")


def oauth_client(provider: ConnectionProvider) -> OAuthClient:
    return OAuthClient(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        authorize_url=provider.authorize_url,
        token_url=provider.token_url,
        redirect_uri=callback_url(),
        scopes=list(provider.scopes),
    )


def connection_token(*, team_id: int, slug: str, user_id: str) -> str | None:
    """The end user's usable access token for the team's provider ``slug``, refreshed
    first when it expired; None when the user must authorize (no connection, or the
    provider refused the refresh: the tokens are dropped). Raises ``ConnectionUnavailable``.

    Locks the connection row while it refreshes (one refresh at a time: a rotated refresh
    token is used once), at most GENIE_OAUTH_TIMEOUT.
    """
    provider = ConnectionProvider.objects.filter(team_id=team_id, slug=slug).first()
    if provider is None:
        raise ConnectionUnavailable(f"This tool needs the connection {slug!r}, which the team has not set up.")
    if not user_id:
        raise ConnectionUnavailable("This tool acts with the end user's account: the session names no user (user_id).")
    with transaction.atomic():
        connection = Connection.objects.live().select_for_update().filter(provider=provider, user_id=user_id).first()
        if connection is None:
            return None
        if connection.is_usable:
            return connection.access_token
        if not connection.refresh_token:
            return None
        try:
            token = oauth_client(provider).refresh(refresh_token=connection.refresh_token)
        except OAuthFailure as exc:
            if not exc.permanent:
                raise ConnectionUnavailable(exc.message) from exc
            logger.info("Provider %s refused to refresh connection %s; asking again", provider.slug, connection.uuid)
            connection.mark_unusable()
            return None
        connection.store_tokens(token)
        return connection.access_token


@transaction.atomic
def request_connection(
    *, call: ToolCall, slug: str, user_id: str, expires_at: datetime
) -> tuple[ConnectionAttempt, AuthLink]:
    """The call waits (``awaiting_connection``) for the end user to authorize the provider:
    the attempt pending for that user and provider (kept alive until ``expires_at``), or a
    new one; returns it with a new authorization link."""
    provider = ConnectionProvider.objects.get(team_id=call.run.session.team_id, slug=slug)
    attempt = ConnectionAttempt.objects.pending_for(provider=provider, user_id=user_id).select_for_update().first()
    if attempt is None:
        attempt = ConnectionAttempt.objects.create(provider=provider, user_id=user_id, expires_at=expires_at)
    else:
        attempt.extend_until(expires_at)
    call.mark_awaiting_connection(attempt)
    return attempt, _new_auth_link(attempt)


def _new_auth_link(attempt: ConnectionAttempt) -> AuthLink:
    """A link through Genie (``open_link``): the provider's URL is given to the browser
    that opens it, bound to that browser."""
    state = attempt.new_link(new_code_verifier())
    url = f"{absolute_url(None, 'runs:connection-authorize')}?{urlencode({'state': state})}"
    return AuthLink(url=url, expires_at=attempt.expires_at)


@dataclass(frozen=True)
class Opener:
    """The browser opening an auth link, as far as Genie can tell: the Genie user it is
    signed in as (its session cookie; None when anonymous), and the session client secret
    the client sent with the link (a publishable key's visitor; '' when none)."""

    user_pk: int | None = None
    session_secret: str = ""


@dataclass(frozen=True)
class Requester:
    """Whom an attempt's links are issued to, as a browser can prove it: ``user_pk`` for a
    signed-in user's session (the browser must be signed in to Genie as that user: an
    ambient credential a sender cannot hand to someone else), ``session`` for a
    publishable key's visitor (the link opens only together with that session's client
    secret, which the visitor's client holds). Neither for a server's session (a secret
    key): Genie cannot tell the server's users apart, so the server shows the link to its
    own user and the link binds to the first browser that opens it."""

    user_pk: int | None = None
    session: Session | None = None

    def check(self, opener: Opener) -> None:
        """Raise ``ConnectionLinkNotForThisBrowser`` unless ``opener`` is the requester."""
        if self.user_pk is not None:
            if opener.user_pk is None:
                raise ConnectionLinkNotForThisBrowser(sign_in=True)
            if opener.user_pk != self.user_pk:
                raise ConnectionLinkNotForThisBrowser()
        elif self.session is not None and not self.session.has_client_secret(opener.session_secret):
            raise ConnectionLinkNotForThisBrowser()


def requester_of(attempt: ConnectionAttempt) -> Requester | None:
    """Whom ``attempt``'s links are for: the creator of the session whose tool call waits on
    it (the calls an attempt serves share one end user, so one creator kind: a user's
    attempt serves that user's sessions, a visitor's its one session); None when no
    session's call names it any more (its sessions were deleted: the link serves nobody).
    One query."""
    session = (
        Session.objects.filter(runs__tool_calls__connection_attempt=attempt)
        .select_related("created_by_token")
        .order_by("-runs__created_at")
        .first()
    )
    if session is None:
        return None
    if session.owner_id is not None:
        return Requester(user_pk=session.owner_id)
    token = session.created_by_token
    if token is not None and token.kind == AccessToken.Kind.PUBLISHABLE:
        return Requester(session=session)
    return Requester()


@dataclass(frozen=True)
class OpenedLink:
    attempt: ConnectionAttempt
    provider_url: str
    binding: str  # the browser's cookie: the callback completes only in this browser


def open_link(*, state: str, opener: Opener) -> OpenedLink:
    """A browser opens an authorization link: it must be the link's requester
    (``requester_of``), then the link is bound to that browser (the first to open it; the
    caller sets ``binding`` as its cookie) and sent on to the provider. The provider's URL
    (with the state) works only in that browser: copied elsewhere, its callback has no
    cookie and is refused. Raises ``InvalidConnectionState`` for a bad, used or expired
    state or a link a browser opened already (another device asks the ``link`` endpoint
    for a fresh one), ``ConnectionLinkNotForThisBrowser`` for someone else's link (nothing
    changes: its requester can still open it)."""
    with transaction.atomic():
        attempt = _attempt_of_state(state)
        if attempt is None or not attempt.is_pending or not attempt.has_link(state):
            raise InvalidConnectionState()
        requester = requester_of(attempt)
        if requester is None:
            raise InvalidConnectionState()
        requester.check(opener)
        opened = attempt.open_link(state)
        if opened is None:
            raise InvalidConnectionState()
    binding, verifier = opened
    url = oauth_client(attempt.provider).authorization_url(state=state, code_verifier=verifier)
    return OpenedLink(attempt=attempt, provider_url=url, binding=binding)


def binding_cookie_name(state: str) -> str:
    """The cookie of a link's binding: one per attempt (its id is the state's first part)."""
    return f"genie_connect_{state.partition('.')[0][:32]}"


@transaction.atomic
def link_connection(*, attempt: ConnectionAttempt) -> AuthLink | None:
    """A new authorization link for a pending attempt (earlier links keep working until
    one is used); None when it is already authorized. Raises ``ConnectionAttemptClosed``."""
    attempt = ConnectionAttempt.objects.select_for_update().select_related("provider").get(pk=attempt.pk)
    if attempt.status == ConnectionAttempt.Status.AUTHORIZED:
        return None
    if not attempt.is_pending:
        raise ConnectionAttemptClosed(details={"attempt_id": str(attempt.attempt_id), "status": _status(attempt)})
    return _new_auth_link(attempt)


@transaction.atomic
def reject_connection(*, attempt: ConnectionAttempt) -> ConnectionAttempt:
    """The user declines: each call waiting on the attempt fails ("connection declined")
    and its run goes on. Rejecting twice is harmless; raises ``ConnectionAttemptClosed``
    for an authorized or expired attempt."""
    attempt = ConnectionAttempt.objects.select_for_update().get(pk=attempt.pk)
    if attempt.status == ConnectionAttempt.Status.REJECTED:
        return attempt
    if not attempt.is_pending:
        raise ConnectionAttemptClosed(details={"attempt_id": str(attempt.attempt_id), "status": _status(attempt)})
    attempt.mark_rejected()
    _release_calls(attempt, declined=True)
    return attempt


def complete_connection(*, state: str, binding: str, code: str = "", error: str = "") -> ConnectionAttempt:
    """The provider's redirect: ``state`` names the attempt, ``binding`` (the browser's
    cookie) must be the one the link was opened with (``open_link``), then the state is
    used up whatever follows; an ``error`` (``access_denied``…) rejects the attempt; a
    ``code`` is exchanged (with the link's PKCE verifier) for tokens, stored encrypted,
    and the waiting calls are released. Raises ``InvalidConnectionState`` (unknown, used
    or expired state), ``UnboundConnectionLink`` (another browser: nothing changes, the
    link still works where it was opened) or ``OAuthFailure`` (the exchange failed: the
    user may link again)."""
    with transaction.atomic():
        attempt = _attempt_of_state(state)
        if attempt is None or not attempt.is_pending or not attempt.has_link(state):
            raise InvalidConnectionState()
        if not attempt.is_bound_to(state, binding):
            raise UnboundConnectionLink()
        verifier = attempt.take_link(state)
        if verifier is None:
            raise InvalidConnectionState()
    if error or not code:
        return reject_connection(attempt=attempt)
    token = oauth_client(attempt.provider).exchange_code(code=code, code_verifier=verifier)
    with transaction.atomic():
        attempt = ConnectionAttempt.objects.select_for_update().select_related("provider").get(pk=attempt.pk)
        if not attempt.is_pending:
            raise InvalidConnectionState()  # rejected or expired while the user was at the provider
        connection = (
            Connection.objects.live()
            .select_for_update()
            .filter(provider=attempt.provider, user_id=attempt.user_id)
            .first()
        ) or Connection(team_id=attempt.provider.team_id, provider=attempt.provider, user_id=attempt.user_id)
        connection.store_tokens(token)
        attempt.mark_authorized()
        _release_calls(attempt, declined=False)
    return attempt


def _attempt_of_state(state: str) -> ConnectionAttempt | None:
    attempt_hex, _, rest = state.partition(".")
    try:
        attempt_id = uuid.UUID(hex=attempt_hex)
    except ValueError:
        return None
    if not rest:
        return None
    return (
        ConnectionAttempt.objects.select_for_update().select_related("provider").filter(attempt_id=attempt_id).first()
    )


def _release_calls(attempt: ConnectionAttempt, *, declined: bool) -> None:
    """Each call waiting on ``attempt`` is failed (declined) or ready to run; a run with no
    call left open is enqueued to continue (after commit)."""
    waiting = list(attempt.tool_calls.filter(status=ToolCall.Status.AWAITING_CONNECTION).values_list("pk", "run_id"))
    for call_pk, run_id in sorted(waiting, key=lambda item: item[1]):
        run = Run.objects.select_for_update(of=("self",)).get(pk=run_id)  # answers to one run are serialised
        call = ToolCall.objects.get(pk=call_pk)
        if call.status != ToolCall.Status.AWAITING_CONNECTION:
            continue
        if declined:
            call.mark_failed(DECLINED)
        else:
            call.mark_connected()
        continue_when_answered(run)


def _status(attempt: ConnectionAttempt) -> str:
    if attempt.status == ConnectionAttempt.Status.AUTH_REQUIRED and not attempt.is_pending:
        return ConnectionAttempt.Status.EXPIRED
    return attempt.status


@transaction.atomic
def revoke_connection(*, connection: Connection) -> None:
    """Forget the user's tokens (the next call of a tool that needs them asks again)."""
    connection.revoke()


def reencrypt_secrets() -> int:
    """Write every stored secret again with the first key (key rotation); returns the rows.
    Each row is read (decrypted with whichever key fits) and saved (encrypted with the first)."""
    count = 0
    for agent in Agent.objects.iterator():
        agent.save(update_fields=["api_key", "webhook_secret"])
        count += 1
    for provider in ConnectionProvider.objects.iterator():
        provider.save(update_fields=["client_secret"])
        count += 1
    for connection in Connection.objects.live().iterator():
        connection.save(update_fields=["access_token", "refresh_token"])
        count += 1
    for attempt in ConnectionAttempt.objects.filter(status=ConnectionAttempt.Status.AUTH_REQUIRED).iterator():
        attempt.links = [{**entry, "code_verifier": reencrypt(entry["code_verifier"])} for entry in attempt.links]
        attempt.save(update_fields=["links"])
        count += 1
    return count
