"""The config loader: precedence, validation messages, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.config import ConfigError, Settings, load_settings, redacted


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CORTEX_PERF_* from the caller's shell, and no ./cortex-perf.yaml picked up by accident."""
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _write(tmp_path: Path, text: str, name: str = "cortex-perf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults() -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.lake.root == "data/lake"
    assert s.collect.interval_s == 60.0
    assert s.logging.level == "INFO"


def test_precedence_defaults_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(
        tmp_path,
        "lake:\n  root: /from/file\n  strict: true\ncollect:\n  interval_s: 30\n  source_timeout_s: 4\n",
    )
    s = load_settings(cfg)
    assert (s.lake.root, s.lake.strict, s.collect.interval_s) == ("/from/file", True, 30.0)
    assert s.logging.level == "INFO"  # untouched default

    monkeypatch.setenv("CORTEX_PERF_LAKE__ROOT", "/from/env")
    monkeypatch.setenv("CORTEX_PERF_COLLECT__INTERVAL_S", "15")
    s = load_settings(cfg)
    assert s.lake.root == "/from/env"
    assert s.lake.strict is True  # a nested env var overrides one field, keeps the file's siblings
    assert s.collect.interval_s == 15.0
    assert s.collect.source_timeout_s == 4.0

    s = load_settings(cfg, ["lake.root=/from/cli", "collect.source_timeout_s=2.5", "lake.strict=false"])
    assert s.lake.root == "/from/cli"
    assert s.lake.strict is False
    assert s.collect.interval_s == 15.0  # env still beats the file where the CLI is silent
    assert s.collect.source_timeout_s == 2.5


def test_file_from_env_var_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "lake:\n  root: /cwd\n")
    assert load_settings().lake.root == "/cwd"
    other = _write(tmp_path, "lake:\n  root: /named\n", name="other.yaml")
    monkeypatch.setenv("CORTEX_PERF_CONFIG", str(other))
    assert load_settings().lake.root == "/named"
    # an explicit path beats both
    explicit = _write(tmp_path, "lake:\n  root: /explicit\n", name="explicit.yaml")
    assert load_settings(explicit).lake.root == "/explicit"


def test_overrides_typed_from_yaml_scalars() -> None:
    s = load_settings(None, ["sources.gpu.enabled=false", "collect.interval_s=5", "logging.level=DEBUG"])
    assert s.sources.gpu.enabled is False
    assert s.collect.interval_s == 5.0
    assert s.logging.level == "DEBUG"
    s = load_settings(None, {"lake.root": "/dict"})
    assert s.lake.root == "/dict"


def test_literal_error_names_field_and_allowed_values(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "logging:\n  level: verbose\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    msg = str(exc.value)
    assert "logging.level" in msg
    for allowed in ("DEBUG", "INFO", "WARNING", "ERROR"):
        assert allowed in msg
    assert "verbose" in msg


def test_every_bad_field_is_reported(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "lake:\n  compact_min_files: 1\n  colour: red\ncollect:\n  interval_s: -1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    msg = str(exc.value)
    assert "lake.compact_min_files" in msg and "greater than or equal to 2" in msg
    assert "lake.colour: unknown field" in msg
    assert "collect.interval_s" in msg


def test_bad_env_and_bad_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_PERF_LOGGING__FORMAT", "xml")
    with pytest.raises(ConfigError, match=r"logging\.format: must be one of 'console' or 'json'"):
        load_settings()
    monkeypatch.delenv("CORTEX_PERF_LOGGING__FORMAT")
    monkeypatch.setenv("CORTEX_PERF_LAKE", "{not json")
    with pytest.raises(ConfigError, match="environment"):
        load_settings()
    monkeypatch.delenv("CORTEX_PERF_LAKE")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_settings(None, ["lake.root"])
    with pytest.raises(ConfigError, match=r"collect\.source_timeout_s"):
        load_settings(None, ["collect.source_timeout_s=0"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(_write(tmp_path, "lake: [unclosed\n", name="broken.yaml"))
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(_write(tmp_path, "- a\n- b\n", name="list.yaml"))


def test_prometheus_target_url_checked(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "sources:\n  prometheus:\n    - name: app\n      url: ftp://x/metrics\n")
    with pytest.raises(ConfigError, match=r"sources\.prometheus\.0\.url: .*http://"):
        load_settings(cfg)


def test_secrets_are_secret_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_PERF_SOURCES__REDIS__URL", "redis://:hunter2-secret@cache:6379/0")
    s = load_settings(None, ["api_token=tok-s3cret"])
    assert s.sources.redis.url.get_secret_value() == "redis://:hunter2-secret@cache:6379/0"
    assert s.api_token is not None and s.api_token.get_secret_value() == "tok-s3cret"
    shown = repr(redacted(s)) + repr(s)
    assert "hunter2-secret" not in shown
    assert "tok-s3cret" not in shown
    assert redacted(s)["sources"]["redis"]["url"] == "**********"


def test_secret_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, ["sources.redis.url=12", "api_token=", "sources.redis.bogus=redis://:pw-xyz@h"])
    assert "pw-xyz" not in str(exc.value)


def test_readme_and_example_cover_every_setting(tmp_path: Path) -> None:
    """README's config reference lists every field with its env var; the example file loads."""
    from pydantic import BaseModel

    repo = Path(__file__).resolve().parents[3]
    readme = (repo / "README.md").read_text()

    def fields(model: type[BaseModel], prefix: str = "") -> list[str]:
        out: list[str] = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += fields(ann, f"{prefix}{name}.")
            else:
                out.append(f"{prefix}{name}")
        return out

    missing = [
        p
        for p in fields(Settings)
        if f"`{p}`" not in readme or f"`CORTEX_PERF_{p.upper().replace('.', '__')}`" not in readme
    ]
    assert not missing, f"README config reference lacks: {missing}"
    # the example file is valid and shows the defaults (loaded from the working directory, tmp_path,
    # because its relative paths mean its own folder)
    example = load_settings(_write(tmp_path, (repo / "cortex-perf.example.yaml").read_text()))
    defaults = load_settings()
    assert example.model_dump(mode="json") == defaults.model_dump(mode="json")
    assert example.sources.redis.url.get_secret_value() == defaults.sources.redis.url.get_secret_value()


def test_project_root_from_a_subfolder_finds_the_config_and_anchors_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel started in notebooks/ (or a CLI run from a subfolder) reads the project's config and
    lake, not notebooks/data/lake; --set paths stay relative to where the command runs."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    _write(project, 'lake:\n  root: data/lake\nalerting:\n  rule_files: ["rules/*.yml", "/abs/r.yml"]\n')
    monkeypatch.chdir(project / "notebooks")
    s = load_settings()
    assert s.lake.root == str(project / "data" / "lake")
    assert s.state.path == str(project / "data" / "state.duckdb")
    assert s.data_dir == str(project / "data")
    assert s.alerting.rule_files == [str(project / "rules" / "*.yml"), "/abs/r.yml"]
    assert load_settings(None, ["state.path=here.duckdb"]).state.path == "here.duckdb"
    monkeypatch.setenv("CORTEX_PERF_LAKE__ROOT", "s3://bucket/lake")
    assert load_settings().lake.root == "s3://bucket/lake"  # URLs are not paths
    monkeypatch.chdir(project)
    monkeypatch.delenv("CORTEX_PERF_LAKE__ROOT")
    assert load_settings().lake.root == "data/lake"  # at the root nothing changes


def test_project_root_stops_at_the_repository_top(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a config file the repository root (pyproject.toml, .git) is the project; a config file
    of an unrelated project further up is never picked up. A named config file's folder is the root."""
    from tasks.config.project import find_project

    _write(tmp_path, "lake:\n  root: /not/this/one\n")
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\n")
    monkeypatch.chdir(repo / "notebooks")
    assert find_project() == (repo, None)
    assert load_settings().lake.root == str(repo / "data" / "lake")
    elsewhere = _write(tmp_path / "repo", "state:\n  path: state.duckdb\n", name="other.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_settings(elsewhere).state.path == str(repo / "state.duckdb")


def test_config_is_a_leaf() -> None:
    """Loading settings imports no domain package: each domain checks its own section
    (``tasks.config_checks``), so the settings never import what they configure."""
    import subprocess
    import sys

    code = (
        "import sys, tasks.config\n"
        "s = tasks.config.load_settings(None, {'scaling.targets': [{'name': 'w', 'capacity_per_unit': 1,"
        " 'metric': {'selector': 'x'}, 'actuator': {'kind': 'webhook'}}], 'reports.notebooks': ['any']})\n"
        "print(sorted(m for m in sys.modules if m.startswith('tasks.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {m for m in eval(out) if not m.startswith("tasks.config")}
    assert loaded <= {"tasks.redact", "tasks.timeparse"}, loaded
