"""Loading the gateway file: formats, every problem at once, syntax positions, odd top levels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from propylon.domain.config import ConfigError, GatewayConfig
from propylon.gateway.config_source import load_config_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.yaml"

MINIMAL: dict[str, object] = {
    "identity_providers": [{"id": "idp", "issuer": "https://idp.example"}],
    "apis": [
        {
            "id": "orders",
            "listen_path": "/orders/",
            "upstream": "http://127.0.0.1:9000/",
            "auth": {"type": "jwt", "identity_provider": "idp", "default_policies": ["bronze"]},
        }
    ],
    "policies": [{"id": "bronze", "access_rights": {"orders": {"methods": ["GET"]}}}],
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    return [str(p) for p in info.value.problems]


def test_example_file_is_valid() -> None:
    config = load_config_file(EXAMPLE)
    assert isinstance(config, GatewayConfig)
    assert {p.id for p in config.policies} == {"bronze", "gold"}
    api = config.apis[0]
    assert api.listen_path == "/orders/"
    assert api.auth.type == "jwt"
    assert api.auth.scope_policies == {"orders:write": "gold"}
    assert config.clients[0].policies == ("gold",)
    assert config.revoked_clients == ("old-client",)


@pytest.mark.parametrize("name", ["gateway.yaml", "gateway.yml", "GATEWAY.YAML"])
def test_loads_yaml(tmp_path: Path, name: str) -> None:
    config = load_config_file(write(tmp_path, name, yaml.safe_dump(MINIMAL)))
    assert config.apis[0].id == "orders"


def test_loads_json(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, "gateway.json", json.dumps(MINIMAL)))
    assert config.policies[0].id == "bronze"


def test_yaml_and_json_give_the_same_config(tmp_path: Path) -> None:
    from_yaml = load_config_file(write(tmp_path, "g.yaml", yaml.safe_dump(MINIMAL)))
    from_json = load_config_file(write(tmp_path, "g.json", json.dumps(MINIMAL)))
    assert from_yaml == from_json


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(MINIMAL).encode())
    assert load_config_file(path).apis[0].id == "orders"


def test_empty_mapping_is_a_valid_empty_config(tmp_path: Path) -> None:
    assert load_config_file(write(tmp_path, "g.yaml", "{}\n")) == GatewayConfig()


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
apis:
  - id: orders
    listen_path: orders/            # 1: must start with '/'
    upstream: ftp://example.com/    # 2: not http(s)
    auth: {type: jwt, identity_provider: idp}
policies:
  - id: bronze
    rate: {requests: 0, per_seconds: 1}   # 3: requests must be > 0
"""
    problems = problems_of(write(tmp_path, "g.yaml", text))
    assert len(problems) == 3, problems
    assert any(p.startswith("apis.0.listen_path:") for p in problems)
    assert any(p.startswith("apis.0.upstream:") for p in problems)
    assert any(p.startswith("policies.0.rate.requests:") for p in problems)


def test_reference_problems_are_all_reported(tmp_path: Path) -> None:
    data = json.loads(json.dumps(MINIMAL))
    data["apis"][0]["auth"]["identity_provider"] = "nope"
    data["apis"][0]["auth"]["default_policies"] = ["missing"]
    data["policies"][0]["access_rights"] = {"billing": {}}
    problems = problems_of(write(tmp_path, "g.json", json.dumps(data)))
    assert problems == [
        "apis.0.auth.identity_provider: unknown identity provider 'nope'",
        "apis.0.auth.default_policies: unknown policy 'missing'",
        "policies.0.access_rights.billing: unknown API 'billing'",
    ]


def test_locations_are_not_prefixed_with_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "apis: 3\n")
    problems = problems_of(path)
    assert problems
    assert all(str(path) not in p and "g.yaml" not in p for p in problems)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    text = "apis:\n  - id: orders\n    listen_path: [/orders/\n    upstream: x\n"
    with pytest.raises(ConfigError) as info:
        load_config_file(write(tmp_path, "g.yaml", text))
    (problem,) = info.value.problems
    assert problem.location.startswith("line ")
    assert "column" in problem.location
    assert problem.message.startswith("invalid YAML:")
    assert isinstance(info.value.__cause__, yaml.YAMLError)


def test_yaml_syntax_error_points_at_the_right_line(tmp_path: Path) -> None:
    text = "version: '1'\napis: []\npolicies: [\n  key: : value\n"
    (problem,) = problems_of(write(tmp_path, "g.yaml", text))
    assert problem.startswith("line 4, column ")


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    text = '{\n  "apis": [],\n  "policies": [}\n}\n'
    with pytest.raises(ConfigError) as info:
        load_config_file(write(tmp_path, "g.json", text))
    (problem,) = info.value.problems
    assert problem.location == "line 3, column 16"
    assert problem.message.startswith("invalid JSON:")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("g.yaml", "- apis\n- policies\n", "a list"),
        ("g.yaml", "just a string\n", "a string"),
        ("g.json", "[1, 2]", "a list"),
        ("g.json", "42", "a number"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, name: str, text: str, kind: str) -> None:
    (problem,) = problems_of(write(tmp_path, name, text))
    assert problem == f"the top level must be a mapping of settings, not {kind}"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("g.yaml", ""),
        ("g.yaml", "   \n\n"),
        ("g.yaml", "# only a comment\n"),
        ("g.yaml", "null\n"),
        ("g.json", ""),
        ("g.json", "\n"),
    ],
)
def test_empty_file_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    assert problems_of(write(tmp_path, name, text)) == ["the file is empty"]


def test_unsupported_suffix(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "gateway.toml", "x = 1\n"))
    assert "unsupported file type '.toml'" in problem


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_file(tmp_path / "absent.yaml")
    (problem,) = info.value.problems
    assert problem.message.startswith("cannot read the file")
    assert isinstance(info.value.__cause__, OSError)


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    directory = tmp_path / "conf.yaml"
    directory.mkdir()
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config_file(directory)


def test_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_bytes(b"version: caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config_file(path)


def test_python_tags_are_refused(tmp_path: Path) -> None:
    text = "version: !!python/object/apply:os.getcwd []\n"
    (problem,) = problems_of(write(tmp_path, "g.yaml", text))
    assert "invalid YAML" in problem


def test_control_characters_are_refused_with_a_position(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "g.yaml", "version: '1'\nname: a\x07b\n"))
    assert problem.startswith("line 2, column 8: invalid YAML")


def test_several_yaml_documents_are_refused(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "g.yaml", "apis: []\n---\npolicies: []\n"))
    assert "invalid YAML" in problem


def test_duplicate_yaml_keys_are_reported_with_validation_problems(tmp_path: Path) -> None:
    text = "apis: []\npolicies: []\napis: []\nbogus: 1\n"
    problems = problems_of(write(tmp_path, "g.yaml", text))
    assert problems == [
        "line 3, column 1: duplicate key 'apis'",
        "bogus: Extra inputs are not permitted",
    ]


def test_duplicate_yaml_keys_alone_still_refuse_the_file(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "g.yaml", "version: a\nversion: b\n"))
    assert problem == "line 2, column 1: duplicate key 'version'"


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = """
policies:
  - id: p
    rate: &limits {requests: 10, per_seconds: 60}
  - id: q
    rate: {<<: *limits, requests: 20}
"""
    config = load_config_file(write(tmp_path, "g.yaml", text))
    rate = config.policies[1].rate
    assert rate is not None
    assert (rate.requests, rate.per_seconds) == (20, 60)


def test_duplicate_json_keys_are_reported(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "g.json", '{"version": "a", "version": "b"}'))
    assert problem == "duplicate key 'version'"
