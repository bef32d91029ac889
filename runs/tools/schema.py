"""JSON Schemas from outside: the one place one is checked and a value validated against
it. Tools' input schemas (an agent's tool when it is saved, each tool an MCP server lists;
an input at each call) and the schemas clients send for structured output (``/v1``'s
``response_format`` json_schema; a strict reply at the end of its turn).

A schema reaches nothing but the input it describes:

- ``$ref`` and ``$dynamicRef`` resolve within the schema only. Validators use a
  ``referencing`` registry that retrieves nothing (jsonschema's documented way); without
  one jsonschema falls back to its deprecated remote retrieval, ``urlopen`` of any
  ``http(s)://`` or ``file://`` URL, outside the egress guard and with no timeout. A
  reference that does not resolve within the schema is refused by the check.
- ``pattern`` and the keys of ``patternProperties`` are matched with RE2, in time linear
  in the input: Python's ``re`` backtracks, exponentially on patterns such as
  ``^(a+)+$``, and one such input froze a worker. A pattern RE2 cannot compile
  (lookaround, backreferences) is refused by the check, and so is ``unevaluatedProperties``
  beside ``patternProperties`` (jsonschema would match those keys with ``re``).

The check runs again before each validation, so a schema stored before these rules (or
an MCP server's) is never validated with ``re`` or retrieval either.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import jsonschema
import re2
from jsonschema import validators
from jsonschema.exceptions import ValidationError
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

# Retrieves nothing: a reference outside the schema (and the bundled meta-schemas) is
# Unresolvable. Registry() alone would do for a validator (jsonschema combines it with
# the meta-schemas); the check's own resolver needs them combined here.
REGISTRY: Registry = SPECIFICATIONS.combine(Registry())
RE2_OPTIONS = re2.Options()
RE2_OPTIONS.log_errors = False  # a refused pattern is the API's 400, not a line on stderr

# Keywords whose value is one subschema, a list of them, or an object of them (Draft
# 2020-12, with the earlier drafts' spellings a copied schema may still use).
ONE_SUBSCHEMA = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
)
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
SUBSCHEMA_OBJECTS = ("$defs", "definitions", "dependentSchemas", "patternProperties", "properties")


@lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:
    """``pattern`` as an RE2 program; raises ``re2.error`` for one RE2 cannot run."""
    return re2.compile(pattern, RE2_OPTIONS)


def matches(pattern: str, text: str) -> bool:
    """JSON Schema's ``pattern``: a search (not anchored), in linear time."""
    return compiled(pattern).search(text) is not None


# jsonschema's own keyword functions, with RE2 in place of ``re``.


def pattern_keyword(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def pattern_properties_keyword(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def additional_properties_keyword(
    validator: Any, additional: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = sorted(
        key for key in instance if key not in properties and not any(matches(pattern, key) for pattern in patterns)
    )
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if patterns:
            listed = ", ".join(repr(extra) for extra in extras)
            yield ValidationError(
                f"{listed} {'does' if len(extras) == 1 else 'do'} not match any of the regexes: "
                f"{', '.join(repr(pattern) for pattern in sorted(patterns))}"
            )
        else:
            listed = ", ".join(repr(extra) for extra in extras)
            yield ValidationError(
                f"Additional properties are not allowed ({listed} {'was' if len(extras) == 1 else 'were'} unexpected)"
            )


InputValidator = validators.extend(
    jsonschema.Draft202012Validator,
    validators={
        "pattern": pattern_keyword,
        "patternProperties": pattern_properties_keyword,
        "additionalProperties": additional_properties_keyword,
    },
)


def subschemas(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each subschema directly under ``schema``, with its path relative to it."""
    for keyword in ONE_SUBSCHEMA:
        if isinstance(schema.get(keyword), dict):
            yield keyword, schema[keyword]
    for keyword in SUBSCHEMA_LISTS:
        if isinstance(schema.get(keyword), list):
            for index, item in enumerate(schema[keyword]):
                yield f"{keyword}/{index}", item
    for keyword in SUBSCHEMA_OBJECTS:
        if isinstance(schema.get(keyword), dict):
            for name, item in schema[keyword].items():
                yield f"{keyword}/{name}", item


def schema_problems(schema: dict[str, Any]) -> Iterator[str]:
    """Why the references and patterns of a schema (already valid against the meta-schema)
    cannot be used, one message per problem, each naming where it is."""
    resource = DRAFT202012.create_resource(schema)
    uses_pattern_properties = False
    uses_unevaluated_properties = False
    stack: list[tuple[str, Any, Any]] = [("", schema, REGISTRY.resolver_with_root(resource))]
    while stack:
        path, node, resolver = stack.pop()
        if not isinstance(node, dict):
            continue
        where = path or "the root"
        if "$id" in node and path:
            resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
        for keyword in ("$ref", "$dynamicRef"):
            reference = node.get(keyword)
            if isinstance(reference, str):
                try:
                    resolver.lookup(reference)
                except Unresolvable:
                    yield (
                        f"{keyword} {reference!r} at {where} does not resolve within the schema "
                        "(Genie fetches no schema: define it under $defs)."
                    )
        patterns = [("pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            uses_pattern_properties = True
            patterns += [("patternProperties", key) for key in node["patternProperties"]]
        uses_unevaluated_properties |= "unevaluatedProperties" in node
        for keyword, pattern in patterns:
            try:
                compiled(pattern)
            except re2.error:
                yield (
                    f"{keyword} {pattern!r} at {where} is not supported: patterns are matched with RE2 "
                    "(no lookaround, no backreferences)."
                )
        stack += [(f"{path}/{sub}".lstrip("/"), child, resolver) for sub, child in reversed(list(subschemas(node)))]
    if uses_pattern_properties and uses_unevaluated_properties:
        yield "unevaluatedProperties cannot be used with patternProperties in a tool's schema."


def check_schema(schema: Any) -> str | None:
    """Why ``schema`` is not a usable JSON Schema (Draft 2020-12, references within itself,
    patterns RE2 can run), or None."""
    if not isinstance(schema, dict):
        return "Must be a JSON Schema object."
    try:
        InputValidator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return f"Not a valid JSON Schema: {exc.message}"
    return next(schema_problems(schema), None)


def mismatch(schema: dict[str, Any], value: Any) -> str | None:
    """Why ``value`` does not match ``schema`` ("at <path>: <message>"), or None. The
    schema must have passed ``check_schema``: no reference is fetched, no pattern
    backtracks (an unresolvable reference is a mismatch)."""
    validator = InputValidator(schema, registry=REGISTRY)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except Unresolvable as exc:
        return f": the schema cannot be used: {exc}"
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{f' at {where}' if where else ''}: {error.message}"


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a usable JSON Schema for a tool's input, or None."""
    if isinstance(schema, dict) and schema.get("type", "object") != "object":
        return 'A tool\'s input is a JSON object: "type" must be "object".'
    return check_schema(schema)


def input_problem(schema: dict[str, Any], arguments: Any) -> str | None:
    """Why ``arguments`` do not match a tool's input ``schema``, or None. A schema the check
    refuses (one stored before its rules, or an MCP server's) refuses every input."""
    problem = schema_problem(schema)
    if problem is not None:
        return f"The tool's input schema cannot be used: {problem}"
    wrong = mismatch(schema, arguments)
    return f"Invalid input{wrong}" if wrong is not None else None


def output_problem(schema: dict[str, Any], value: Any) -> str | None:
    """Why a structured reply ``value`` does not match the client's ``schema``, or None."""
    problem = check_schema(schema)
    if problem is not None:
        return f"The response_format schema cannot be used: {problem}"
    wrong = mismatch(schema, value)
    return f"The reply does not match the schema{wrong}" if wrong is not None else None
