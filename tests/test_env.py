"""The environment variables the kit reads, read in one place."""

import pytest

from eventlab import _env


def test_get_reads_a_known_variable_and_treats_empty_as_unset(monkeypatch):
    """get() returns the value, None when unset or empty."""
    monkeypatch.setenv(_env.NAMESPACE, "alice")
    assert _env.get(_env.NAMESPACE) == "alice"
    monkeypatch.setenv(_env.NAMESPACE, "")
    assert _env.get(_env.NAMESPACE) is None
    monkeypatch.delenv(_env.NAMESPACE)
    assert _env.get(_env.NAMESPACE) is None


def test_get_refuses_a_variable_the_kit_does_not_declare():
    """A new variable must be added to VARIABLES (and docs/architecture.md) before it is read."""
    with pytest.raises(KeyError, match="HOME"):
        _env.get("HOME")
