"""Signing in through the real login form, with the Content-Security-Policy on."""

import pytest

from tests.factories import AgentProfileFactory


@pytest.mark.django_db(transaction=True)
def test_agent_signs_in_through_the_form_and_lands_in_the_inbox(new_page, desk_server, settings):
    # The server process hashes as production does (the suite's fast hasher is not in its list).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    agent = AgentProfileFactory(user__username="noor", user__first_name="Noor", user__last_name="Bakker").user
    agent.set_password("a long enough password")
    agent.save()
    page = new_page()
    response = page.goto("/")
    assert "/login/" in page.url
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("Username").fill("noor")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{desk_server}/")
    assert page.locator(".topbar .who").inner_text() == "Noor Bakker"
