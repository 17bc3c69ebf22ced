"""Demo data for trying the desk: two queues, a team lead, four agents, reply templates, a stream.

Demo-only: the users share one password chosen by whoever seeds (``manage.py seed_demo``). Never
seed a production database. Seeding only creates what is missing and never edits existing
rows, so running it again changes nothing; passwords are set on users it creates, and on all
demo users only when ``reset_passwords`` is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from inbox.models import AgentProfile, Platform, Queue, ReplyTemplate, ReplyTemplateVariant, SlaPolicy, Source
from inbox.services.sla import sla_config_changed

DEMO_LANGUAGES = ("nl", "en", "fr", "de", "es")


@dataclass(frozen=True)
class DemoQueue:
    slug: str
    name: str
    description: str
    is_default: bool = False


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    role: str
    languages: tuple[str, ...]
    capacity: int
    queues: tuple[str, ...]
    ui_language: str = "en"


@dataclass(frozen=True)
class DemoTemplate:
    shortcut: str
    name: str
    # language code -> text with {customer_name}, {agent_first_name}, {ticket_number}
    variants: dict[str, str]


QUEUES = (
    DemoQueue("care", "Care", "Everything that is not about bags or money.", is_default=True),
    DemoQueue("baggage", "Baggage & Refunds", "Delayed, damaged or lost baggage; refunds and claims."),
)

USERS = (
    DemoUser("lead", "Sanne", "de Vries", AgentProfile.Role.LEAD, ("nl", "en"), 4, ("care", "baggage"), "nl"),
    DemoUser("anna", "Anna", "Jansen", AgentProfile.Role.AGENT, ("nl", "en"), 8, ("care",), "nl"),
    DemoUser("pierre", "Pierre", "Dubois", AgentProfile.Role.AGENT, ("fr", "en"), 6, ("care", "baggage")),
    DemoUser("jonas", "Jonas", "Becker", AgentProfile.Role.AGENT, ("de", "nl", "en"), 8, ("care", "baggage")),
    DemoUser("lucia", "Lucía", "Romero", AgentProfile.Role.AGENT, ("es", "en"), 6, ("baggage",)),
)

TEMPLATES = (
    DemoTemplate(
        "dm-booking",
        "Greeting: booking code via DM",
        {
            "nl": "Hoi {customer_name}, bedankt voor je bericht! Wil je ons je boekingscode in een "
            "privébericht sturen? Dan zoeken we het meteen voor je uit. ^{agent_first_name}",
            "en": "Hi {customer_name}, thanks for reaching out! Could you send us your booking code in "
            "a private message? Then we can look into it for you right away. ^{agent_first_name}",
            "fr": "Bonjour {customer_name}, merci pour votre message ! Pourriez-vous nous envoyer votre "
            "code de réservation en message privé ? Nous regarderons cela tout de suite. "
            "^{agent_first_name}",
            "de": "Hallo {customer_name}, danke für Ihre Nachricht! Könnten Sie uns Ihren Buchungscode "
            "per Direktnachricht schicken? Dann kümmern wir uns sofort darum. ^{agent_first_name}",
            "es": "Hola {customer_name}, ¡gracias por escribirnos! ¿Podría enviarnos su código de "
            "reserva por mensaje privado? Así lo revisamos enseguida. ^{agent_first_name}",
        },
    ),
    DemoTemplate(
        "delay-apology",
        "Apology for a delay",
        {
            "nl": "Wat vervelend dat je vlucht vertraagd is, {customer_name}. We begrijpen hoe "
            "frustrerend dat is. De actuele vertrektijd staat altijd in de app; stuur ons een DM als "
            "je je aansluiting dreigt te missen. ^{agent_first_name}",
            "en": "We're really sorry your flight is delayed, {customer_name}. We understand how "
            "frustrating this is. The app always shows the latest departure time; send us a DM if "
            "you might miss your connection. ^{agent_first_name}",
            "fr": "Nous sommes désolés pour le retard de votre vol, {customer_name}. Nous comprenons "
            "votre frustration. L'application affiche toujours l'heure de départ à jour ; écrivez-nous "
            "en privé si vous risquez de manquer votre correspondance. ^{agent_first_name}",
            "de": "Es tut uns leid, dass sich Ihr Flug verspätet, {customer_name}. Wir verstehen Ihren "
            "Ärger. Die aktuelle Abflugzeit steht immer in der App; schreiben Sie uns eine "
            "Direktnachricht, falls Sie Ihren Anschluss verpassen könnten. ^{agent_first_name}",
            "es": "Sentimos mucho el retraso de su vuelo, {customer_name}. Entendemos lo frustrante "
            "que es. La app muestra siempre la hora de salida actualizada; escríbanos por privado si "
            "puede perder su conexión. ^{agent_first_name}",
        },
    ),
    DemoTemplate(
        "baggage-claim",
        "Baggage claim steps",
        {
            "nl": "Wat vervelend dat je koffer niet is aangekomen, {customer_name}. Meld het bij de "
            "bagagebalie of online met je dossiernummer, en bewaar de bonnetjes van noodzakelijke "
            "aankopen. Je zaaknummer bij ons is {ticket_number}. ^{agent_first_name}",
            "en": "So sorry your bag didn't arrive, {customer_name}. Please report it at the baggage "
            "desk or online with your file reference, and keep the receipts for essentials you buy. "
            "Your case number with us is {ticket_number}. ^{agent_first_name}",
            "fr": "Désolés que votre bagage ne soit pas arrivé, {customer_name}. Déclarez-le au "
            "comptoir bagages ou en ligne avec votre numéro de dossier, et gardez les reçus de vos "
            "achats de première nécessité. Votre numéro de suivi : {ticket_number}. ^{agent_first_name}",
            "de": "Es tut uns leid, dass Ihr Gepäck nicht angekommen ist, {customer_name}. Bitte melden "
            "Sie es am Gepäckschalter oder online mit Ihrer Vorgangsnummer und heben Sie Belege für "
            "nötige Einkäufe auf. Ihre Fallnummer: {ticket_number}. ^{agent_first_name}",
            "es": "Sentimos que su maleta no haya llegado, {customer_name}. Declárela en el mostrador "
            "de equipajes o en línea con su número de expediente, y guarde los recibos de las compras "
            "básicas. Su número de caso: {ticket_number}. ^{agent_first_name}",
        },
    ),
    DemoTemplate(
        "refund",
        "Refund process",
        {
            "nl": "Hoi {customer_name}, je kunt een terugbetaling aanvragen via 'Mijn reis' op onze "
            "website. Het bedrag gaat terug naar je oorspronkelijke betaalmethode; je krijgt een "
            "e-mail zodra het verwerkt is. Noem {ticket_number} als je ons weer schrijft. "
            "^{agent_first_name}",
            "en": "Hi {customer_name}, you can request a refund under 'My trip' on our website. The "
            "amount goes back to your original payment method and you'll get an e-mail once it's "
            "processed. Please mention {ticket_number} if you write to us again. ^{agent_first_name}",
            "fr": "Bonjour {customer_name}, vous pouvez demander un remboursement dans « Mon voyage » "
            "sur notre site. Le montant revient sur votre moyen de paiement d'origine et un e-mail "
            "vous le confirmera. Indiquez {ticket_number} si vous nous réécrivez. ^{agent_first_name}",
            "de": "Hallo {customer_name}, eine Erstattung beantragen Sie auf unserer Website unter "
            "„Meine Reise“. Der Betrag geht an Ihre ursprüngliche Zahlungsart zurück, Sie erhalten "
            "dann eine E-Mail. Bitte nennen Sie {ticket_number}, wenn Sie erneut schreiben. "
            "^{agent_first_name}",
            "es": "Hola {customer_name}, puede solicitar el reembolso en «Mi viaje» en nuestra web. "
            "El importe vuelve a su método de pago original y le avisaremos por correo electrónico. "
            "Mencione {ticket_number} si vuelve a escribirnos. ^{agent_first_name}",
        },
    ),
    DemoTemplate(
        "rebooked",
        "Rebooking done",
        {
            "nl": "Goed nieuws, {customer_name}: we hebben je omgeboekt naar de eerstvolgende "
            "beschikbare vlucht. Je nieuwe reisschema staat in de app en komt ook per e-mail. Kunnen "
            "we nog iets voor je doen? ^{agent_first_name}",
            "en": "Good news, {customer_name}: we've rebooked you on the next available flight. Your "
            "new itinerary is in the app and on its way by e-mail. Anything else we can do for you? "
            "^{agent_first_name}",
            "fr": "Bonne nouvelle, {customer_name} : nous vous avons placé sur le prochain vol "
            "disponible. Votre nouvel itinéraire est dans l'application et arrive aussi par e-mail. "
            "Pouvons-nous faire autre chose pour vous ? ^{agent_first_name}",
            "de": "Gute Nachricht, {customer_name}: Wir haben Sie auf den nächsten freien Flug "
            "umgebucht. Ihr neuer Reiseplan steht in der App und kommt auch per E-Mail. Können wir "
            "sonst noch etwas für Sie tun? ^{agent_first_name}",
            "es": "Buenas noticias, {customer_name}: le hemos cambiado al próximo vuelo disponible. Su "
            "nuevo itinerario está en la app y le llegará por correo electrónico. ¿Podemos ayudarle "
            "en algo más? ^{agent_first_name}",
        },
    ),
    DemoTemplate(
        "thanks",
        "Thanks for the praise",
        {
            "nl": "Heel erg bedankt, {customer_name}! We geven je mooie woorden door aan de "
            "bemanning. Een fijne reis gewenst! ^{agent_first_name}",
            "en": "Thank you so much, {customer_name}! We'll pass your kind words on to the crew. "
            "Have a wonderful trip! ^{agent_first_name}",
            "fr": "Merci beaucoup, {customer_name} ! Nous transmettrons vos compliments à l'équipage. "
            "Excellent voyage ! ^{agent_first_name}",
            "de": "Vielen herzlichen Dank, {customer_name}! Wir geben Ihr Lob gern an die Crew "
            "weiter. Eine schöne Reise! ^{agent_first_name}",
            "es": "¡Muchas gracias, {customer_name}! Transmitiremos sus amables palabras a la "
            "tripulación. ¡Buen viaje! ^{agent_first_name}",
        },
    ),
)

DEMO_SOURCE_NAME = "Demo stream"
DEMO_SLA_NAME = "Webcare 24/7: answer within the hour"
DEMO_SOURCE_CONFIG = {"seed": 2010, "rate_per_minute": 20, "max_batch": 50}


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    queues: tuple[str, ...]


@dataclass
class DemoSeedResult:
    """What one run created and what was already there, keyed by kind ("queue", "user", ...)."""

    created: dict[str, list[str]] = field(default_factory=dict)
    present: dict[str, list[str]] = field(default_factory=dict)
    # Usernames whose password this run set (new users, or all with reset_passwords).
    passwords_set: list[str] = field(default_factory=list)
    logins: list[DemoLogin] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def created_count(self) -> int:
        return sum(len(keys) for keys in self.created.values())

    def record(self, kind: str, key: str, created: bool) -> None:
        (self.created if created else self.present).setdefault(kind, []).append(key)


def demo_seed(*, password: str | None, reset_passwords: bool = False) -> DemoSeedResult:
    """Create the demo queues, team, templates and stream that are missing.

    ``password`` is given to users this run creates (``None``: they get an unusable password);
    with ``reset_passwords`` it is set on every demo user, including existing ones.
    """
    result = DemoSeedResult()
    with transaction.atomic():
        queues = _seed_queues(result)
        users = _seed_users(result, queues, password=password, reset_passwords=reset_passwords)
        _seed_templates(result, created_by=users["lead"])
        _seed_source(result, default_queue=queues["care"])
        _seed_sla(result)
    return result


def _seed_queues(result: DemoSeedResult) -> dict[str, Queue]:
    queues: dict[str, Queue] = {}
    # Never take the default flag from a queue an earlier setup made the default.
    other_default = Queue.objects.filter(is_default=True).exclude(slug="care").first()
    default_taken = other_default is not None
    for spec in QUEUES:
        queue, created = Queue.objects.get_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "description": spec.description,
                "is_default": spec.is_default and not default_taken,
            },
        )
        result.record("queue", spec.slug, created)
        if created and spec.is_default and default_taken:
            result.notes.append(f"{spec.name} is not the default queue: {other_default} already is.")
        queues[spec.slug] = queue
    return queues


def _seed_users(
    result: DemoSeedResult,
    queues: dict[str, Queue],
    *,
    password: str | None,
    reset_passwords: bool,
) -> dict[str, AbstractBaseUser]:
    user_model = get_user_model()
    users: dict[str, AbstractBaseUser] = {}
    for spec in USERS:
        user, created = user_model.objects.get_or_create(
            username=spec.username,
            defaults={
                "first_name": spec.first_name,
                "last_name": spec.last_name,
                "email": f"{spec.username}@demo.webcare.invalid",
                "is_staff": spec.role == AgentProfile.Role.LEAD,
                # A callable: hashed only when the user is created. make_password(None) is unusable.
                "password": lambda: make_password(password),
            },
        )
        result.record("user", spec.username, created)
        if created:
            if password is not None:
                result.passwords_set.append(spec.username)
        elif reset_passwords and password is not None:
            user.set_password(password)
            user.save(update_fields=["password"])
            result.passwords_set.append(spec.username)

        _, created = AgentProfile.objects.get_or_create(
            user=user,
            defaults={
                "role": spec.role,
                "languages": list(spec.languages),
                "capacity": spec.capacity,
                "ui_language": spec.ui_language,
            },
        )
        result.record("agent profile", spec.username, created)

        for slug in spec.queues:
            _, created = Queue.members.through.objects.get_or_create(queue=queues[slug], user=user)
            result.record("queue membership", f"{spec.username}@{slug}", created)

        users[spec.username] = user
        result.logins.append(DemoLogin(spec.username, spec.role, spec.queues))
    return users


def _seed_templates(result: DemoSeedResult, *, created_by: AbstractBaseUser) -> None:
    for spec in TEMPLATES:
        template, created = ReplyTemplate.objects.get_or_create(
            shortcut=spec.shortcut, defaults={"name": spec.name, "created_by": created_by}
        )
        result.record("reply template", spec.shortcut, created)
        for language in DEMO_LANGUAGES:
            _, created = ReplyTemplateVariant.objects.get_or_create(
                template=template, language=language, defaults={"body": spec.variants[language]}
            )
            result.record("template variant", f"{spec.shortcut}[{language}]", created)


def _seed_sla(result: DemoSeedResult) -> None:
    """A published response time, as an airline webcare team has: one hour, around the clock."""
    _, created = SlaPolicy.objects.get_or_create(
        name=DEMO_SLA_NAME,
        defaults={"first_response_minutes": 60, "next_response_minutes": 60, "resolution_minutes": 24 * 60},
    )
    result.record("SLA policy", DEMO_SLA_NAME, created)
    if created:
        sla_config_changed()


def _seed_source(result: DemoSeedResult, *, default_queue: Queue) -> None:
    _, created = Source.objects.get_or_create(
        name=DEMO_SOURCE_NAME,
        defaults={
            "platform": Platform.SIMULATED,
            "account_id": "demo-brand",
            "default_queue": default_queue,
            "poll_interval_seconds": 5,
            "config": dict(DEMO_SOURCE_CONFIG),
        },
    )
    result.record("source", DEMO_SOURCE_NAME, created)
