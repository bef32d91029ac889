import json

import schemathesis
from hypothesis import HealthCheck, settings

from genie.wsgi import application
from tests.genie.test_schema_conformance import CHECKS, CONFIG, in_process, offline  # noqa: F401

raw = json.load(open("/tmp/schema_before.json"))
before = schemathesis.openapi.from_dict(raw, config=CONFIG)
before.app = application
before = before.exclude(path_regex=r"/stream$")
SEEN = set()


@before.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_before(case, in_process):
    try:
        case.call_and_validate(headers=in_process, checks=CHECKS)
    except BaseException as exc:  # noqa: BLE001
        for f in getattr(exc, "exceptions", [exc]):
            msg = str(f).replace("\n", " ")[:160]
            key = (case.operation.label, type(f).__name__, msg)
            if key not in SEEN:
                SEEN.add(key)
                open("/tmp/before.txt", "a").write(" | ".join(key) + "\n")
