from datetime import UTC, datetime, timedelta, timezone

import pytest

from tasks.lake import schema as S


@pytest.mark.parametrize("name", ["cpu", "node_cpu_seconds_total", ":ns:rate5m", "_x"])
def test_valid_metric_names(name):
    assert S.validate_metric_name(name) == name


@pytest.mark.parametrize("name", ["", "1cpu", "cpu-load", "cpu load", "ü"])
def test_invalid_metric_names_name_the_field(name):
    with pytest.raises(S.SchemaError, match=r"^metric: invalid metric name"):
        S.validate_metric_name(name)


def test_label_names_follow_prometheus_rules():
    assert S.canonical_labels({"b": "2", "a": "1"}) == '{"a":"1","b":"2"}'
    with pytest.raises(S.SchemaError, match="labels: invalid label name 'a:b'"):
        S.canonical_labels({"a:b": "x"})
    with pytest.raises(S.SchemaError, match="reserved"):
        S.canonical_labels({"__name__": "x"})


def test_empty_label_value_is_absent_and_numbers_are_text():
    assert S.canonical_labels({"a": "", "b": 3}) == '{"b":"3"}'
    with pytest.raises(S.SchemaError, match="labels.flag: label values must be strings"):
        S.canonical_labels({"flag": True})


def test_label_limits():
    with pytest.raises(S.SchemaError, match="3 labels, over the limit of 2"):
        S.canonical_labels({"a": "1", "b": "2", "c": "3"}, max_labels=2)
    with pytest.raises(S.SchemaError, match="labels.a: value is 5 characters"):
        S.canonical_labels({"a": "xxxxx"}, max_value_length=4)


def test_timestamps_must_be_utc_and_are_truncated_to_ms():
    ts = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert S.to_utc_ms(ts).microsecond == 123000
    with pytest.raises(S.SchemaError, match="ts: naive timestamp"):
        S.to_utc_ms(datetime(2026, 1, 1))
    with pytest.raises(S.SchemaError, match="is not UTC"):
        S.to_utc_ms(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))))
    # a +00:00 fixed offset is UTC
    assert S.to_utc_ms(datetime(2026, 1, 1, tzinfo=timezone(timedelta(0)))).tzinfo == UTC


@pytest.mark.parametrize("v", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_rejected(v):
    with pytest.raises(S.SchemaError, match="value: non-finite"):
        S.validate_value(v)


def test_series_id_is_stable_and_label_order_free():
    a = S.series_id("m", S.canonical_labels({"x": "1", "y": "2"}))
    b = S.series_id("m", S.canonical_labels({"y": "2", "x": "1"}))
    assert a == b
    assert a != S.series_id("m", S.canonical_labels({"x": "1"}))
    assert S.series_key("m", '{"a":"x\\"y"}') == 'm{a="x\\"y"}'
