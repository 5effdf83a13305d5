"""The API's limits are part of the one settings object: the ``[api]`` table
of the config file, ``THREADKEEP_API__*`` variables and flags, in that order."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_serve import Server

from threadkeep.api import ApiSettings
from threadkeep.config import Settings, load_settings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("[api]\nmax_body_bytes = 1000\n")
    monkeypatch.setenv("THREADKEEP_CONFIG", str(path))
    monkeypatch.setenv("THREADKEEP_DATA_DIR", str(tmp_path / "data"))
    for name in list(os.environ):
        if name.startswith("THREADKEEP_API__"):
            monkeypatch.delenv(name)
    return path


def test_api_settings_come_from_toml_then_env_then_flags(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ApiSettings is Settings.model_fields["api"].annotation
    assert load_settings().api.max_body_bytes == 1000
    assert load_settings().api.max_json_depth == 100  # a default beside a TOML value
    monkeypatch.setenv("THREADKEEP_API__MAX_BODY_BYTES", "2000")
    assert load_settings().api.max_body_bytes == 2000
    flagged = load_settings(api=ApiSettings(max_body_bytes=3000))
    assert flagged.api.max_body_bytes == 3000


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def test_serve_honours_the_api_table_of_the_config_file(
    config: Path, tmp_path: Path, servers: list[Server]
) -> None:
    env = dict(os.environ)
    server = Server(env, tmp_path / "server.log")
    servers.append(server)
    token = re.search(r"token: (tk_\S+)", "\n".join(server.printed()))
    assert token
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    with httpx.Client(base_url=server.base, headers=auth, timeout=10) as client:
        sid = client.post("/v1/sessions", json={}).json()["id"]
        small = client.post(
            f"/v1/sessions/{sid}/messages",
            json={"messages": [{"role": "user", "content": "x" * 100}]},
        )
        assert small.status_code == 201, small.text
        big = client.post(
            f"/v1/sessions/{sid}/messages",
            json={"messages": [{"role": "user", "content": "x" * 2048}]},
        )
        assert big.status_code == 413, big.text
        assert big.headers["content-type"].startswith("application/problem+json")
    assert server.stop() == 0
