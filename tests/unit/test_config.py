"""Where the URL comes from, and the typed errors for a wrong one."""

from __future__ import annotations

from pathlib import Path

import pytest

import lockstep
from lockstep.config import DEFAULT_URL, load_settings, parse_url, redact


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOCKSTEP_URL", raising=False)
    monkeypatch.delenv("LOCKSTEP_NAMESPACE", raising=False)
    monkeypatch.chdir(tmp_path)


def test_default_is_the_embedded_file_driver() -> None:
    s = load_settings()
    assert s.url == DEFAULT_URL
    assert s.scheme == "file"
    assert s.source == "default"


def test_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKSTEP_URL", "memory://env")
    assert load_settings("memory://arg").location == "arg"
    s = load_settings()
    assert s.location == "env"
    assert s.source == "$LOCKSTEP_URL"


def test_env_beats_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "lockstep.toml").write_text('url = "memory://fromfile"\n')
    assert load_settings().location == "fromfile"
    monkeypatch.setenv("LOCKSTEP_URL", "memory://env")
    assert load_settings().location == "env"


def test_pyproject_tool_table_found_from_a_subfolder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.lockstep]\nurl = "memory://pp"\nnamespace = "cfn"\n'
    )
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    s = load_settings()
    assert (s.location, s.namespace) == ("pp", "cfn")
    assert s.source.endswith("pyproject.toml")
    assert Path(s.base_dir) == tmp_path


def test_pyproject_without_tool_table_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_settings().source == "default"


def test_unknown_setting_in_config_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "lockstep.toml").write_text('url = "memory://"\nnamspace = "typo"\n')
    with pytest.raises(lockstep.ConfigError, match="namspace"):
        load_settings()


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "lockstep.toml").write_text('url = "memory://\n')
    with pytest.raises(lockstep.ConfigError, match="lockstep.toml"):
        load_settings()


def test_unknown_scheme_names_known_and_closest() -> None:
    with pytest.raises(lockstep.UnknownSchemeError) as info:
        lockstep.connect("reddis://localhost")
    err = info.value
    assert err.scheme == "reddis"
    assert err.closest == "redis"
    for scheme in ("memory", "file", "redis", "rediss", "redis+streams"):
        assert scheme in err.known
        assert scheme in str(err)


@pytest.mark.parametrize("bad", ["", "   ", "localhost:6379", "://x"])
def test_url_without_scheme_is_a_config_error(bad: str) -> None:
    with pytest.raises(lockstep.ConfigError):
        parse_url(bad)


def test_duplicate_option_is_refused() -> None:
    with pytest.raises(lockstep.ConfigError, match="busy_timeout"):
        parse_url("file:///x.db?busy_timeout=1&busy_timeout=2")


def test_bad_option_value_names_option() -> None:
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect("file:///tmp/x.db?busy_timeout=soon")
    assert info.value.option == "busy_timeout"


def test_misspelt_option_suggests_the_right_one() -> None:
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect("file:///tmp/x.db?busy_timeot=1")
    assert info.value.closest == "busy_timeout"
    assert "busy_timeout" in str(info.value)


@pytest.mark.parametrize("ns", ["", "has space", "{tag}", "x" * 201, ":lead"])
def test_bad_namespace_is_an_invalid_name(ns: str) -> None:
    with pytest.raises(lockstep.InvalidNameError):
        lockstep.connect("memory://", namespace=ns)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5"])
def test_bad_timeout_is_a_config_error(timeout: object) -> None:
    with pytest.raises(lockstep.ConfigError, match="timeout"):
        lockstep.connect("memory://", timeout=timeout)  # type: ignore[arg-type]


def test_redact_hides_password_only() -> None:
    assert redact("redis://alice:s3cret@h:1/0") == "redis://alice:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    assert "s3cret" not in repr(lockstep.connect("memory://"))


def test_member_defaults_to_host_pid_random() -> None:
    import os

    a, b = load_settings("memory://"), load_settings("memory://")
    assert f":{os.getpid()}:" in a.member
    assert a.member != b.member


def test_keys_carry_hash_tags_and_namespace() -> None:
    c = lockstep.connect("memory://", namespace="cfn")
    key = c.keys.key("lock", "test", "fence")
    assert key == "ls:cfn:{lock:test}:fence"
    with pytest.raises(lockstep.InvalidNameError):
        c.keys.key("lock", "bad{name}")
