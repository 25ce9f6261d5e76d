"""The control API's form payloads are pydantic models: a refused field is a 400 naming it."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from engine.control.errors import BadRequest
from engine.control.resources.environments import EnvironmentCreate
from engine.control.resources.services import ServiceCreate
from engine.control.shapes import parse_form


def test_a_service_payload_is_parsed_with_the_hosted_defaults() -> None:
    parsed = parse_form(ServiceCreate, MultiDict({"UniqueName": "Shop", "FriendlyName": "Shop", "Other": "ignored"}))
    assert (parsed.unique_name, parsed.include_credentials, parsed.ui_editable) == ("shop", True, False)
    assert parse_form(ServiceCreate, MultiDict({"UniqueName": "a", "FriendlyName": "b", "UiEditable": "true"})).ui_editable


@pytest.mark.parametrize(("form", "words"), [
    ({"FriendlyName": "x"}, ["missing required parameter UniqueName"]),
    ({"UniqueName": "", "FriendlyName": "x"}, ["missing required parameter UniqueName"]),
    ({"UniqueName": "bad name", "FriendlyName": "x"}, ["UniqueName 'bad name'", "domain name"]),
    ({"UniqueName": "a" * 51, "FriendlyName": "x"}, ["UniqueName", "longer than 50"]),
    ({"UniqueName": "a", "FriendlyName": "x", "UiEditable": "maybe"}, ["UiEditable", "true or false"]),
])
def test_a_bad_service_field_is_refused_by_name(form: dict[str, str], words: list[str]) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_form(ServiceCreate, MultiDict(form))
    for word in words:
        assert word in refused.value.message


def test_an_environment_suffix_must_be_a_dns_label() -> None:
    assert parse_form(EnvironmentCreate, MultiDict({"UniqueName": "dev", "DomainSuffix": ""})).domain_suffix is None
    assert parse_form(EnvironmentCreate, MultiDict({"UniqueName": "dev", "DomainSuffix": "dev"})).domain_suffix == "dev"
    with pytest.raises(BadRequest, match="DomainSuffix '-dev'"):
        parse_form(EnvironmentCreate, MultiDict({"UniqueName": "dev", "DomainSuffix": "-dev"}))
