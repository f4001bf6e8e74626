"""eventlab.course: the lesson setup connects, names keys per lesson and resets only them."""

from __future__ import annotations

from eventlab import course


def test_setup_resets_only_the_lessons_keys(broker, client, monkeypatch, capsys):
    """setup("03") deletes {lab:l03-*} keys, keeps other lessons' keys, and prints versions."""
    monkeypatch.setenv("EVENTLAB_STATE", str(broker.state))
    client.xadd("{lab:l03-orders}", {"a": "1"})
    client.xadd("{lab:l04-orders}", {"a": "1"})
    lesson = course.setup("03")
    out = capsys.readouterr().out
    assert "redis" in out
    assert "faststream" in out
    assert "1 old key(s) reset" in out
    assert lesson.key("orders") == "{lab:l03-orders}"
    assert client.exists("{lab:l03-orders}") == 0
    assert client.exists("{lab:l04-orders}") == 1
    assert lesson.broker.pid == broker.pid


def test_versions_lists_the_course_packages():
    """versions() names every package a lesson prints."""
    found = course.versions()
    assert set(found) >= {"eventlab", "redis", "faststream", "pandas", "altair"}
    assert all(v != "missing" for v in found.values())


def test_setup_checks_in_to_a_workshop(broker, client, monkeypatch):
    """In a workshop namespace, setup records the lesson for the instructor's status."""
    from eventlab import workshop  # noqa: PLC0415

    monkeypatch.setenv("EVENTLAB_STATE", str(broker.state))
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    course.setup("05", quiet=True)
    [learner] = workshop.status(client)
    assert learner.learner == "alice"
    assert "05" in learner.lessons
