import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("accept", "heading"), [("nl", "Inloggen"), ("en", "Log in")])
def test_login_page_speaks_dutch_and_english(client, accept, heading):
    html = client.get("/login/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
    assert f"<h1>{heading}</h1>" in html


def test_every_dutch_message_is_translated():
    from pathlib import Path

    from django.conf import settings

    po = (Path(settings.BASE_DIR) / "locale/nl/LC_MESSAGES/django.po").read_text(encoding="utf-8")
    entries = po.split("\n\n")[1:]
    untranslated = [e for e in entries if 'msgstr ""' in e and "\n\"" not in e.split('msgstr ""', 1)[1]]
    assert untranslated == []
    assert "#, fuzzy" not in po
