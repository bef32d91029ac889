from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from genie.metrics import registry
        from runs.metrics import RunsCollector

        registry.register(RunsCollector())
