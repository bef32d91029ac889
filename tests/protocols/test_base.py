"""What every protocol shares (``protocols.base``), in process: a validation error flattened
once (``field_errors``) and written in each protocol's voice, seed 001's every field dotted,
OpenAI's first one as ``param`` in its notation."""

from __future__ import annotations

from rest_framework import serializers

from genie.exceptions import _describe
from genie.serializers import StrictSerializer
from protocols.base import FieldError, field_errors
from protocols.openai.errors import openai_error
from protocols.seed001.views import seed001_error


class PartSerializer(StrictSerializer):
    text = serializers.CharField(max_length=3)


class MessageSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=["user"])
    parts = PartSerializer(many=True)


class RequestSerializer(StrictSerializer):
    model = serializers.CharField()
    messages = serializers.ListField(child=MessageSerializer())  # its errors are keyed by position
    tags = serializers.ListField(child=serializers.IntegerField(), required=False)

    def validate(self, attrs: dict) -> dict:
        raise serializers.ValidationError("The request as a whole is wrong.")


def details_of(data: dict) -> object:
    """What the one error path gives a voice for ``data``, as a view would raise it."""
    request = RequestSerializer(data=data)
    assert not request.is_valid()
    return _describe(serializers.ValidationError(request.errors))[2]


def test_every_error_is_flattened_in_order_with_its_path_and_code():
    details = details_of(
        {
            "model": "",
            "messages": [{"role": "user", "parts": [{"text": "ok"}, {"text": "long"}]}, {"role": "bot", "parts": []}],
            "tags": ["x"],
        }
    )

    errors = field_errors(details)

    assert [(e.path, e.code) for e in errors] == [
        (("model",), "blank"),
        (("messages", "0", "parts", "1", "text"), "max_length"),
        (("messages", "1", "role"), "invalid_choice"),
        (("tags", "0"), "invalid"),
    ]
    assert errors[1].message == "Ensure this field has no more than 3 characters."


def test_a_serializers_own_error_and_a_bare_message():
    assert field_errors(details_of({"model": "m", "messages": []})) == [
        FieldError(("non_field_errors",), "The request as a whole is wrong.", "invalid")
    ]
    assert field_errors({"model": "Not this one."}) == [FieldError(("model",), "Not this one.", None)]
    assert field_errors(["not a dict"]) == []  # no field is named
    assert field_errors({}) == []


def test_a_list_of_objects_is_named_by_position_where_a_voice_wants_it():
    details = {"items": [{}, {"name": ["Taken."]}]}  # a list serializer's errors: one object per item

    assert field_errors(details) == [FieldError(("items", 1, "name"), "Taken.", None)]
    assert seed001_error("validation_error", "", details, 400)["errors"] == [
        {"field": "items.name", "message": "Taken."}
    ]
    assert openai_error("validation_error", "", details, 400)["error"]["param"] == "items[1].name"


def test_seed001_writes_every_error_with_its_field_dotted():
    details = details_of({"model": "", "messages": [{"role": "user", "parts": [{"text": "long"}]}]})

    body = seed001_error("validation_error", "The request is invalid.", details, 400)

    assert body["errors"] == [
        {"field": "model", "message": "This field may not be blank."},
        {"field": "messages.0.parts.0.text", "message": "Ensure this field has no more than 3 characters."},
    ]
    assert body["message"] == "model: This field may not be blank."
    assert body["details"] == details
    assert seed001_error("not_found", "No such genie.", None, 404)["errors"] == []


def test_openai_names_the_first_error_in_its_notation():
    details = details_of({"model": "m", "messages": [{"role": "user", "parts": [{"text": "ok"}, {"text": "long"}]}]})

    error = openai_error("validation_error", "The request is invalid.", details, 400)["error"]

    assert error == {
        "message": "messages[0].parts[1].text: Ensure this field has no more than 3 characters.",
        "type": "invalid_request_error",
        "param": "messages[0].parts[1].text",
        "code": "max_length",
    }


def test_openai_unknown_parameters_and_errors_of_the_whole_request():
    unknown = openai_error("validation_error", "", details_of({"model": "m", "messages": [], "n": 2}), 400)["error"]
    assert (unknown["param"], unknown["code"]) == ("n", "unknown_parameter")
    assert unknown["message"] == "Unrecognized request argument supplied: n"

    whole = openai_error("validation_error", "", details_of({"model": "m", "messages": []}), 400)["error"]
    assert (whole["param"], whole["message"], whole["code"]) == (None, "The request as a whole is wrong.", "invalid")
