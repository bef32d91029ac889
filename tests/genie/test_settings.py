"""Settings come from the environment once, strictly: DEBUG is off unless asked for and a
boolean or number that does not parse stops the process instead of meaning its default."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from genie.settings import env_bool, env_float, env_int
from tests.processes import run_python

PRINT_DEBUG = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("On", True), ("0", False), ("off", False)])
def test_boolean_words(monkeypatch, raw, value):
    monkeypatch.setenv("GENIE_TEST_FLAG", raw)

    assert env_bool("GENIE_TEST_FLAG", not value) is value


@pytest.mark.parametrize(("reader", "raw"), [(env_bool, "ture"), (env_int, "ten"), (env_float, "fast")])
def test_a_value_that_does_not_parse_is_a_configuration_error(monkeypatch, reader, raw):
    monkeypatch.setenv("GENIE_TEST_VALUE", raw)

    with pytest.raises(ImproperlyConfigured, match="GENIE_TEST_VALUE"):
        reader("GENIE_TEST_VALUE", 1)


def test_debug_is_off_unless_asked_for_and_a_typo_stops_the_process():
    env = {key: value for key, value in os.environ.items() if key != "DEBUG"}
    env["DJANGO_SETTINGS_MODULE"] = "genie.settings"

    default = run_python("-c", PRINT_DEBUG, env=env, timeout=60)
    asked = run_python("-c", PRINT_DEBUG, env={**env, "DEBUG": "1"}, timeout=60)
    typo = run_python("-c", PRINT_DEBUG, env={**env, "DEBUG": "ture"}, timeout=60)

    assert default.stdout.strip() == "False"
    assert asked.stdout.strip() == "True"
    assert typo.returncode != 0
    assert "DEBUG='ture' is not a boolean" in typo.stderr
