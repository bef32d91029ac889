"""Serializer bases shared by the apps, and the api-keys serializers."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from genie.cors import normalize_origin
from genie.models import AccessToken


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not declare, so a caller can never set ``sender_role``,
    ``owner``, ``team`` or ``status`` by sending them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown}, code="unknown_field")
        return super().to_internal_value(data)


class JSONObjectField(serializers.DictField):
    """A JSON object of at most GENIE_MAX_METADATA_BYTES serialized (``metadata``,
    ``ui_context``): callers' data is stored with every message, so it has a bound."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
        if size > settings.GENIE_MAX_METADATA_BYTES:
            raise serializers.ValidationError(
                f"At most {settings.GENIE_MAX_METADATA_BYTES} bytes of JSON; this is {size}.", code="too_large"
            )
        return value


class OriginField(serializers.CharField):
    """An origin, ``scheme://host[:port]``, stored as a browser sends it (``genie.cors``)."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            return normalize_origin(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_origin") from exc


class ApiKeyCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=[AccessToken.Kind.SECRET, AccessToken.Kind.PUBLISHABLE])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    allowed_origins = serializers.ListField(
        child=OriginField(max_length=300),
        required=False,
        max_length=50,
        help_text="Publishable keys: the origins of the pages that may use the key from a browser.",
    )

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        origins = attrs.get("allowed_origins")
        if origins is not None and attrs["kind"] != AccessToken.Kind.PUBLISHABLE:
            raise serializers.ValidationError(
                {"allowed_origins": ["Only publishable keys have allowed origins: a secret key stays on servers."]},
                code="not_publishable",
            )
        attrs["allowed_origins"] = list(dict.fromkeys(origins or []))
        return attrs


class ApiKeySerializer(serializers.ModelSerializer):
    allowed_origins = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = AccessToken
        fields = [
            "uuid",
            "kind",
            "name",
            "prefix",
            "allowed_origins",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    """``POST api-keys``: the new key's record, and the key itself, shown this once."""

    key = serializers.CharField(read_only=True, help_text="The key: it is stored hashed and never shown again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
