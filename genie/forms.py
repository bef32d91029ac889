"""Forms of Genie's own pages (the first run's account)."""

from __future__ import annotations

from django.contrib.auth.forms import BaseUserCreationForm


class FirstAccountForm(BaseUserCreationForm):
    """Username and a password typed twice, checked by the configured password validators
    (``AUTH_PASSWORD_VALIDATORS``). It only validates: ``genie.services.create_first_user``
    writes the account."""
