"""REST: SLA policies and business calendars (leads write, desk users read) and the calendar
preview."""

from __future__ import annotations

from datetime import date, time

import pytest
from rest_framework.test import APIClient

from inbox.models import BusinessCalendar, BusinessHours, CalendarHoliday, SlaPolicy
from inbox.selectors.sla import forget_sla_config, sla_config
from tests.factories import AgentProfileFactory, QueueFactory
from tests.sla import BusinessHoursFactory, CalendarHolidayFactory, SlaPolicyFactory, office_calendar

pytestmark = pytest.mark.django_db

CALENDARS = "/api/v1/business-calendars/"
POLICIES = "/api/v1/sla-policies/"


@pytest.fixture(autouse=True)
def _fresh_sla_config():
    forget_sla_config()
    yield
    forget_sla_config()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def agent_api(db):
    return client_for(AgentProfileFactory(user__username="anna").user)


@pytest.fixture
def lead_api(db):
    return client_for(AgentProfileFactory(user__username="lea", role="lead").user)


NIGHT_AND_DAY = {
    "name": "Care NL",
    "time_zone": "Europe/Amsterdam",
    "always_open": False,
    "holiday_country": "nl",
    "holiday_subdivision": "",
    "hours": [
        {"weekday": 0, "start": "08:00", "end": "12:00"},
        {"weekday": 0, "start": "13:00", "end": "17:00"},
        {"weekday": 4, "start": "22:00", "end": "06:00"},
    ],
    "holidays": [{"date": "2026-12-24", "name": "Christmas Eve"}],
}


def test_a_lead_creates_a_calendar_with_shifts_and_holidays(lead_api):
    response = lead_api.post(CALENDARS, NIGHT_AND_DAY, format="json")
    assert response.status_code == 201, response.json()
    calendar = BusinessCalendar.objects.get()
    assert response.json() == {
        "id": calendar.pk,
        "name": "Care NL",
        "time_zone": "Europe/Amsterdam",
        "always_open": False,
        "holiday_country": "NL",
        "holiday_subdivision": "",
        "hours": [
            {"weekday": 0, "start": "08:00:00", "end": "12:00:00"},
            {"weekday": 0, "start": "13:00:00", "end": "17:00:00"},
            {"weekday": 4, "start": "22:00:00", "end": "06:00:00"},
        ],
        "holidays": [{"date": "2026-12-24", "name": "Christmas Eve"}],
        "week_minutes": 960.0,
    }
    assert list(
        BusinessHours.objects.values_list("weekday", "start", "end").order_by("weekday", "start")
    ) == [
        (0, time(8), time(12)),
        (0, time(13), time(17)),
        (4, time(22), time(6)),
    ]
    assert list(CalendarHoliday.objects.values_list("date", "name")) == [
        (date(2026, 12, 24), "Christmas Eve")
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "hours": [
                    {"weekday": 4, "start": "22:00", "end": "06:00"},
                    {"weekday": 5, "start": "05:00", "end": "09:00"},
                ]
            },
            "Shifts Fri 22:00-06:00 and Sat 05:00-09:00 overlap.",
        ),
        ({"time_zone": "Europe/Atlantis"}, "Unknown time zone Europe/Atlantis."),
        (
            {"holiday_country": "XX"},
            "The holidays library does not know the country XX (subdivision -).",
        ),
        ({"hours": []}, "A calendar that is not 24/7 needs at least one shift."),
        (
            {"holidays": [{"date": "2026-12-24"}, {"date": "2026-12-24"}]},
            "A date can be a holiday only once per calendar.",
        ),
    ],
)
def test_calendars_that_cannot_work_are_refused(lead_api, change, message):
    response = lead_api.post(CALENDARS, {**NIGHT_AND_DAY, **change}, format="json")
    assert (response.status_code, response.json()) == (400, {"non_field_errors": [message]})
    assert BusinessCalendar.objects.count() == 0


def test_an_update_replaces_the_shifts_and_keeps_the_holidays(lead_api):
    calendar = office_calendar("Office")
    CalendarHolidayFactory(calendar=calendar, date=date(2026, 12, 24))
    response = lead_api.patch(
        f"{CALENDARS}{calendar.pk}/",
        {"hours": [{"weekday": 6, "start": "00:00", "end": "00:00"}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert list(BusinessHours.objects.values_list("weekday", "start", "end")) == [(6, time(0), time(0))]
    assert response.json()["week_minutes"] == 1440.0
    assert CalendarHoliday.objects.filter(calendar=calendar).count() == 1


def test_agents_read_calendars_but_cannot_change_them(agent_api):
    calendar = office_calendar("Office")
    listed = agent_api.get(CALENDARS)
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["results"]] == ["Office"]
    assert agent_api.post(CALENDARS, NIGHT_AND_DAY, format="json").status_code == 403
    assert agent_api.patch(f"{CALENDARS}{calendar.pk}/", {"name": "Mine"}, format="json").status_code == 403
    assert agent_api.delete(f"{CALENDARS}{calendar.pk}/").status_code == 403
    assert BusinessCalendar.objects.get().name == "Office"


def test_anonymous_callers_get_nothing():
    assert APIClient().get(CALENDARS).status_code == 403
    assert APIClient().get(POLICIES).status_code == 403


def test_preview_shows_when_a_target_is_due(agent_api):
    calendar = office_calendar("Office NL", holiday_country="NL")
    # Friday before King's Day, 16:00 + 2 business hours.
    response = agent_api.get(
        f"{CALENDARS}{calendar.pk}/preview/", {"start": "2026-04-24T16:00:00+02:00", "minutes": "120"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "start": "2026-04-24T16:00:00+02:00",
        "minutes": 120.0,
        "due_at": "2026-04-28T10:00:00+02:00",
        "due_at_local": "2026-04-28T10:00:00+02:00",
        "time_zone": "Europe/Amsterdam",
    }


def test_preview_checks_its_input(agent_api):
    calendar = office_calendar("Office")
    response = agent_api.get(f"{CALENDARS}{calendar.pk}/preview/", {"start": "soon", "minutes": "-5"})
    assert response.status_code == 400
    assert sorted(response.json()) == ["minutes", "start"]


def test_a_lead_deletes_a_calendar(lead_api):
    calendar = office_calendar("Office")
    BusinessHoursFactory(calendar=calendar, weekday=5)
    assert lead_api.delete(f"{CALENDARS}{calendar.pk}/").status_code == 204
    assert (BusinessCalendar.objects.count(), BusinessHours.objects.count()) == (0, 0)


# --- Policies ------------------------------------------------------------------------------------


def test_a_lead_creates_a_policy_and_new_tickets_get_it(lead_api, django_capture_on_commit_callbacks):
    queue = QueueFactory(name="Care", slug="care")
    calendar = office_calendar("Office")
    body = {
        "name": "Care urgent", "queue": queue.pk, "priority": 3, "calendar": calendar.pk,
        "first_response_minutes": 15, "next_response_minutes": 30, "resolution_minutes": 240,
        "at_risk_ratio": 0.75, "notify_leads": True, "raise_priority": False,
    }  # fmt: skip
    assert sla_config().select(queue_id=queue.pk, priority=3) is None
    with django_capture_on_commit_callbacks(execute=True):
        response = lead_api.post(POLICIES, body, format="json")
    assert response.status_code == 201, response.json()
    policy = SlaPolicy.objects.get()
    assert response.json() == {"id": policy.pk, **body}
    assert sla_config().select(queue_id=queue.pk, priority=3).policy.id == policy.pk


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"at_risk_ratio": 1.5, "priority": 2},
            400,
            ["At risk must be above 0 and at most 1 (0.8 is 80% of the target)."],
        ),
        ({"priority": None}, 400, ["Another policy already covers this queue and priority."]),
    ],
)
def test_policies_that_cannot_work_are_refused(lead_api, body, status, message):
    SlaPolicyFactory(name="Any")
    response = lead_api.post(POLICIES, {"name": "Second", **body}, format="json")
    assert (response.status_code, response.json()) == (status, {"non_field_errors": message})
    assert SlaPolicy.objects.count() == 1


def test_priority_must_be_a_ticket_priority(lead_api):
    response = lead_api.post(POLICIES, {"name": "Odd", "priority": 5}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["priority"]


def test_a_lead_edits_and_deletes_a_policy(lead_api):
    policy = SlaPolicyFactory(name="Care", first_response_minutes=60)
    response = lead_api.patch(f"{POLICIES}{policy.pk}/", {"first_response_minutes": 45}, format="json")
    assert (response.status_code, response.json()["first_response_minutes"]) == (200, 45)
    assert lead_api.delete(f"{POLICIES}{policy.pk}/").status_code == 204
    assert SlaPolicy.objects.count() == 0


def test_agents_read_policies_and_filter_them_by_queue(agent_api):
    queue = QueueFactory(name="Care", slug="care")
    SlaPolicyFactory(name="Care", queue=queue)
    SlaPolicyFactory(name="Default")
    response = agent_api.get(POLICIES, {"queue": queue.pk})
    assert [p["name"] for p in response.json()["results"]] == ["Care"]
    assert agent_api.post(POLICIES, {"name": "Mine"}, format="json").status_code == 403
