from django.apps import AppConfig


class GenieConfig(AppConfig):
    name = "genie"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers system checks, the CORS rule, schema extensions, and the signals that
        # invalidate cached bearer keys (genie.auth.BearerKeyCache) in every process.
        from genie import auth, checks, cors, schema  # noqa: F401
