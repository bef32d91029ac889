from django.apps import AppConfig


class GenieConfig(AppConfig):
    name = "genie"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from genie import checks, cors, schema  # noqa: F401  (registers system checks, the CORS rule, schema extensions)
