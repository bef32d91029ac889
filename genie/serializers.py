from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from chat.serializers import StrictSerializer
from genie.models import AccessToken


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
