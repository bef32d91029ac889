"""Serializer bases shared by the apps, and the api-keys serializers."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

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


class ApiKeyCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=[AccessToken.Kind.SECRET, AccessToken.Kind.PUBLISHABLE])
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = AccessToken
        fields = ["uuid", "kind", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
