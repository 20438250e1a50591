"""The plugin app says in Vietnamese when the platform is not there yet, instead of a bare 500."""

from __future__ import annotations

import importlib.util

import pytest
from fastapi.testclient import TestClient

from sapnhap.services import S3Config, Services
from sapnhap_dev.embedded import PROJECT_ROOT

pytestmark = pytest.mark.integration


def _plugin():  # noqa: ANN202 - the plugin module, loaded from plugins/ as Airflow loads it
    spec = importlib.util.spec_from_file_location("sapnhap_ui", PROJECT_ROOT / "plugins" / "sapnhap_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_on_a_platform_not_created_yet(scratch_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = _plugin()
    monkeypatch.setattr(plugin, "_services", lambda: Services(platform_dsn=scratch_db, s3=S3Config()))
    plugin.app.dependency_overrides[plugin.current_user] = object
    client = TestClient(plugin.app, raise_server_exceptions=False)
    for path in ("/tonight", "/review", "/quarantine"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert "chưa được khởi tạo" in response.text
