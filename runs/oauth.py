"""The OAuth 2.0 client of connections, through authlib (its httpx integration) and the
egress guard: the authorization URL (code flow, PKCE S256, the attempt's state), the code
exchange and the refresh grant. Knows nothing of the ORM; raises only ``OAuthFailure``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from django.conf import settings

from genie.egress import EgressRefused, GuardedSyncTransport2


class OAuthFailure(Exception):
    """The provider did not give a token. ``permanent``: it answered with a refusal
    (``invalid_grant``…), so asking again gives the same answer; otherwise it could not be
    reached or answered nonsense."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class OAuthClient:
    """One provider as the OAuth client sees it (``client_secret`` in memory only)."""

    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    redirect_uri: str
    scopes: list[str] = field(default_factory=list)

    def _session(self) -> OAuth2Client:
        # client_secret_post when there is a secret (some providers refuse Basic), none for a public client
        return OAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret or None,
            token_endpoint_auth_method="client_secret_post" if self.client_secret else "none",
            scope=" ".join(self.scopes) or None,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            transport=GuardedSyncTransport2(),
            timeout=settings.GENIE_OAUTH_TIMEOUT,
            follow_redirects=False,
        )

    def authorization_url(self, *, state: str, code_verifier: str) -> str:
        with self._session() as session:
            url, _ = session.create_authorization_url(self.authorize_url, state=state, code_verifier=code_verifier)
        return url

    def exchange_code(self, *, code: str, code_verifier: str) -> dict[str, Any]:
        """The token endpoint's answer to the authorization code (with the PKCE verifier)."""
        return self._token_request(
            lambda session: session.fetch_token(
                self.token_url, grant_type="authorization_code", code=code, code_verifier=code_verifier
            )
        )

    def refresh(self, *, refresh_token: str) -> dict[str, Any]:
        return self._token_request(lambda session: session.refresh_token(self.token_url, refresh_token=refresh_token))

    def _token_request(self, send: Any) -> dict[str, Any]:
        try:
            with self._session() as session:
                token = dict(send(session))
        except OAuthError as exc:
            raise OAuthFailure(f"The provider refused: {exc.error}.", permanent=True) from exc
        except EgressRefused as exc:
            raise OAuthFailure(exc.message, permanent=True) from exc
        except (httpx2.HTTPError, ValueError) as exc:
            raise OAuthFailure("The provider's token endpoint could not be reached.", permanent=False) from exc
        if not token.get("access_token"):
            raise OAuthFailure("The provider's answer has no access token.", permanent=False)
        return token


def new_code_verifier() -> str:
    """A PKCE code verifier: 64 characters of the unreserved set (RFC 7636: 43 to 128)."""
    return generate_token(64)
