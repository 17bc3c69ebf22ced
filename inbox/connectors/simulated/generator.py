"""Synthetic webcare traffic for an invented airline, as a pure function of a seed.

Message ``n`` of a stream depends only on ``(spec, started_at, n)``: every random
choice for it comes from ``random.Random(f"{seed}:{n}...")``, so the stream is the
same however it is cut into polls, in any process. A message may follow up an
earlier message of the same customer; which one is decided from a bounded number of
earlier draws, so computing any message costs the same at n = 10 and n = 10**9.

Customers also answer the brand's replies (``answer_to_brand_reply``): whether and
when is a pure function of the seed and the reply's place on the platform.

All text is invented for the demo: the airline is "SkyBlue Air" (@SkyBlueAir),
flight numbers use the made-up designator "SB", links point at example.com.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from inbox.connectors.base import AuthorIdentity, InboundMessage

BRAND_HANDLE = "SkyBlueAir"
FLIGHT_DESIGNATOR = "SB"
LANGUAGES: tuple[str, ...] = ("nl", "en", "fr", "de", "es", "it", "pt")

# How far back (in sequence numbers) a customer's follow-up may point, and how many
# follow-ups deep one thread may grow. The depth cap keeps every message O(1).
FOLLOW_UP_LOOKBACK = 120
MAX_THREAD_DEPTH = 4
# Share of customer-initiated messages that are public mentions (the rest are DMs).
PUBLIC_SHARE = 0.6
# Scheduled times get up to this fraction of one interval of jitter; below 1 keeps
# the stream strictly ordered by time.
_JITTER = 0.8
# Customers answer a brand reply after this many seconds (uniform).
ANSWER_DELAY_SECONDS = (30.0, 600.0)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What shapes the stream: everything except the start time."""

    seed: int = 1
    rate_per_minute: float = 12.0
    follow_up_rate: float = 0.2
    reply_follow_up_rate: float = 0.5

    @property
    def interval_seconds(self) -> float:
        return 60.0 / self.rate_per_minute


@dataclass(frozen=True, slots=True)
class Persona:
    """An invented customer on the fake platform."""

    external_id: str
    handle: str
    display_name: str
    followers_count: int
    verified: bool
    language: str

    def identity(self) -> AuthorIdentity:
        return AuthorIdentity(
            external_id=self.external_id,
            handle=self.handle,
            display_name=self.display_name,
            followers_count=self.followers_count,
            verified=self.verified,
            language=self.language,
        )

    @property
    def dm_conversation_id(self) -> str:
        return f"dm-{self.external_id}"


@dataclass(frozen=True, slots=True)
class BrandReply:
    """A reply the brand posted on the fake platform (see platform.py)."""

    index: int
    platform_id: str
    idempotency_key: str
    text: str
    in_reply_to_external_id: str
    conversation_id: str
    is_public: bool
    customer_id: str
    posted_at: datetime


# --- Personas -------------------------------------------------------------------

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nl": (
        ("Sanne", "Daan", "Lotte", "Bram", "Fleur", "Joris", "Noor", "Thijs", "Eva", "Sem", "Anouk", "Ruben"),
        ("de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "Bos", "Vos"),
    ),
    "en": (
        ("Emma", "Oliver", "Amelia", "Jack", "Grace", "Harry", "Chloe", "Leo", "Priya", "Marcus", "Aisha"),
        ("Walker", "Hughes", "Bennett", "Clarke", "Turner", "Patel", "Okafor", "Reid", "Fletcher", "Doyle"),
    ),
    "fr": (
        ("Camille", "Louis", "Chloé", "Hugo", "Léa", "Théo", "Manon", "Lucas", "Inès", "Mathis"),
        ("Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Lefèvre", "Girard", "Mercier", "Faure"),
    ),
    "de": (
        ("Lena", "Jonas", "Mia", "Felix", "Hannah", "Lukas", "Sophie", "Maximilian", "Jana", "Tobias"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Hoffmann", "Schäfer", "Koch"),
    ),
    "es": (
        ("Lucía", "Hugo", "Martina", "Pablo", "Sofía", "Alejandro", "Paula", "Daniel", "Carmen", "Javier"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Ruiz"),
    ),
    "it": (
        ("Giulia", "Marco", "Chiara", "Luca", "Francesca", "Matteo", "Sara", "Andrea"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci"),
    ),
    "pt": (
        ("Beatriz", "João", "Inês", "Tiago", "Mariana", "Rui", "Catarina", "Duarte"),
        ("Silva", "Santos", "Ferreira", "Pereira", "Oliveira", "Costa", "Rodrigues", "Martins"),
    ),
}
# How many of the pool's personas write in each language (Dutch and English dominate).
_LANGUAGE_SHARE: dict[str, int] = {"nl": 24, "en": 26, "fr": 10, "de": 10, "es": 10, "it": 5, "pt": 5}
_NAME_DECORATIONS = (" ✈️", " 🌍", " 🏳️‍🌈", " 👩‍💻", " 🧳", " 🌷", " ☕")


def _ascii(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if ch.isascii() and ch.isalnum())


@lru_cache(maxsize=1)
def personas() -> tuple[Persona, ...]:
    """The platform's customers: the same pool for every seed, like one real platform."""
    rng = random.Random("webcare-simulated-personas-v1")
    languages = [lang for lang, count in _LANGUAGE_SHARE.items() for _ in range(count)]
    rng.shuffle(languages)
    pool: list[Persona] = []
    handles: set[str] = set()
    for index, language in enumerate(languages):
        first_names, last_names = _NAMES[language]
        first, last = rng.choice(first_names), rng.choice(last_names)
        style = rng.randrange(4)
        if style == 0:
            handle = f"{_ascii(first).lower()}_{_ascii(last).lower()}"
        elif style == 1:
            handle = f"{_ascii(first).lower()}{_ascii(last).lower()[:4]}{rng.randint(1, 99)}"
        elif style == 2:
            handle = f"{_ascii(first)[0].lower()}{_ascii(last).lower()}{rng.randint(70, 99)}"
        else:
            handle = f"{_ascii(first)}Travels"
        while handle in handles:
            handle = f"{handle}{rng.randint(0, 9)}"
        handles.add(handle)
        display = f"{first} {last}" if rng.random() < 0.7 else first
        if rng.random() < 0.15:
            display += rng.choice(_NAME_DECORATIONS)
        # Pareto: most people have a few dozen followers, a handful have a large audience.
        followers = int(20 * rng.paretovariate(0.7)) - 20
        if rng.random() < 0.06:
            # A few travel bloggers and public figures with a large audience.
            followers = int(rng.lognormvariate(11.0, 1.2))
        followers = min(followers, 4_000_000)
        verified = followers >= 100_000 or rng.random() < 0.03
        pool.append(
            Persona(
                external_id=f"sim-user-{index:03d}",
                handle=handle,
                display_name=display,
                followers_count=followers,
                verified=verified,
                language=language,
            )
        )
    return tuple(pool)


@lru_cache(maxsize=1)
def _persona_weights() -> tuple[float, ...]:
    # Some customers write far more often than others (rank ** -0.6).
    return tuple(1.0 / (rank + 1) ** 0.6 for rank in range(len(personas())))


@lru_cache(maxsize=1)
def _personas_by_id() -> dict[str, Persona]:
    return {p.external_id: p for p in personas()}


def persona_by_id(external_id: str) -> Persona | None:
    return _personas_by_id().get(external_id)


# --- Text -----------------------------------------------------------------------

TOPICS: tuple[str, ...] = (
    "delay",
    "cancellation",
    "baggage_lost",
    "baggage_damaged",
    "rebooking",
    "refund",
    "checkin",
    "seat_meal",
    "praise",
    "complaint",
)
_TOPIC_WEIGHTS = (16, 10, 12, 6, 10, 9, 9, 7, 9, 12)

# Placeholders: {flight} {booking} {city} {hours} {link}. Written for this demo.
_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "delay": (
            "Flight {flight} to {city} delayed again, now {hours} hours. Nobody at the gate knows anything. What is going on?",
            "Sitting at the gate for {flight} and the board just says DELAYED. Will I make my connection in {city}?",
        ),
        "cancellation": (
            "My flight {flight} was just cancelled and the app shows nothing. Booking {booking}. What are my options?",
            "Cancelled at midnight by text message, no hotel, no rebooking. {flight} to {city}. Really?",
        ),
        "baggage_lost": (
            "Landed in {city} {hours} hours ago, my suitcase did not. My file is on {link}. Where is my bag?",
            "My bag from flight {flight} never showed up on the belt. Booking {booking}. Please help, my medication is in there.",
        ),
        "baggage_damaged": (
            "My suitcase came off {flight} with a broken wheel and a cracked shell. Photos: {link}",
            "The handle of my bag was ripped off on the way to {city}. How do I file a claim? Booking {booking}",
        ),
        "rebooking": (
            "Can I move booking {booking} to a later flight to {city}? The website keeps giving an error.",
            "I need to change my return date, booking {booking}. The change fee on {link} looks wrong to me.",
        ),
        "refund": (
            "Still waiting for the refund of {booking}, it has been {hours} weeks since you cancelled {flight}.",
            "Asked for a refund for my cancelled trip to {city} ages ago. Case is on {link}. Any progress?",
        ),
        "checkin": (
            "Online check-in for {flight} fails with 'passenger not found'. Booking {booking}.",
            "The app will not let me check in, it crashes at the passport screen. Flying to {city} in {hours} hours!",
        ),
        "seat_meal": (
            "Is it possible to add a vegetarian meal to booking {booking}? Flying {flight} tomorrow.",
            "We were seated apart on {flight} to {city}, travelling with a toddler. Can you fix the seats? {booking}",
        ),
        "praise": (
            "Huge thanks to the crew of {flight} to {city}, they went out of their way for my grandmother.",
            "Smooth flight and a very kind crew on {flight} today. Thank you!",
        ),
        "complaint": (
            "Waited {hours} hours on hold and then the line just dropped. Worst customer service I have ever seen.",
            "Paid for extra legroom on {flight} and got a broken seat that does not recline. I want my money back. {booking}",
        ),
    },
    "nl": {
        "delay": (
            "Vlucht {flight} naar {city} heeft weer vertraging, nu al {hours} uur. Niemand bij de gate weet iets. Wat is er aan de hand?",
            "Zit al uren bij de gate voor {flight}. Haal ik mijn aansluiting in {city} nog wel?",
        ),
        "cancellation": (
            "Mijn vlucht {flight} is net geannuleerd en in de app staat niks. Boeking {booking}. Wat nu?",
            "Om middernacht een sms dat {flight} naar {city} geannuleerd is. Geen hotel, geen nieuwe vlucht. Serieus?",
        ),
        "baggage_lost": (
            "{hours} uur geleden geland in {city}, mijn koffer niet. Mijn melding staat op {link}. Waar is mijn koffer?",
            "Mijn bagage van vlucht {flight} kwam nooit op de band. Boeking {booking}. Mijn medicijnen zitten erin, help aub.",
        ),
        "baggage_damaged": (
            "Mijn koffer kwam van {flight} af met een kapot wieltje en een barst. Foto's: {link}",
            "Het handvat van mijn tas is eraf gerukt onderweg naar {city}. Hoe dien ik een claim in? Boeking {booking}",
        ),
        "rebooking": (
            "Kan ik boeking {booking} omzetten naar een latere vlucht naar {city}? De website geeft steeds een foutmelding.",
            "Ik moet mijn terugreis verzetten, boeking {booking}. De wijzigingskosten op {link} kloppen volgens mij niet.",
        ),
        "refund": (
            "Wacht nog steeds op mijn terugbetaling voor {booking}, al {hours} weken sinds jullie {flight} annuleerden.",
            "Lang geleden een terugbetaling aangevraagd voor mijn reis naar {city}. Dossier staat op {link}. Nog nieuws?",
        ),
        "checkin": (
            "Online inchecken voor {flight} lukt niet: 'passagier niet gevonden'. Boeking {booking}.",
            "De app crasht bij het paspoortscherm, ik kan niet inchecken. Ik vlieg over {hours} uur naar {city}!",
        ),
        "seat_meal": (
            "Kan ik een vegetarische maaltijd toevoegen aan boeking {booking}? Ik vlieg morgen met {flight}.",
            "We zitten niet naast elkaar op {flight} naar {city}, met een peuter. Kunnen jullie de stoelen aanpassen? {booking}",
        ),
        "praise": (
            "Dikke pluim voor de crew van {flight} naar {city}, ze hebben mijn oma super geholpen.",
            "Rustige vlucht en ontzettend vriendelijke bemanning op {flight}. Bedankt!",
        ),
        "complaint": (
            "{hours} uur in de wacht gestaan en toen werd de verbinding verbroken. Slechtste klantenservice ooit.",
            "Extra beenruimte betaald op {flight} en een kapotte stoel gekregen. Ik wil mijn geld terug. {booking}",
        ),
    },
    "fr": {
        "delay": (
            "Le vol {flight} pour {city} est encore retardé, déjà {hours} heures. Personne à la porte ne sait rien. Que se passe-t-il ?",
            "J'attends à la porte pour le {flight} depuis une éternité. Est-ce que j'aurai ma correspondance à {city} ?",
        ),
        "cancellation": (
            "Mon vol {flight} vient d'être annulé et l'appli n'affiche rien. Réservation {booking}. Quelles sont mes options ?",
            "Annulation par SMS à minuit pour le {flight} vers {city}, pas d'hôtel, pas de nouveau vol. Sérieusement ?",
        ),
        "baggage_lost": (
            "Arrivé à {city} il y a {hours} heures, ma valise non. Mon dossier est sur {link}. Où est mon bagage ?",
            "Mon bagage du vol {flight} n'est jamais arrivé sur le tapis. Réservation {booking}. Mes médicaments sont dedans, aidez-moi svp.",
        ),
        "baggage_damaged": (
            "Ma valise est sortie du {flight} avec une roue cassée et la coque fendue. Photos : {link}",
            "La poignée de mon sac a été arrachée pendant le trajet vers {city}. Comment faire une réclamation ? Réservation {booking}",
        ),
        "rebooking": (
            "Puis-je déplacer la réservation {booking} sur un vol plus tard vers {city} ? Le site affiche une erreur.",
            "Je dois changer ma date de retour, réservation {booking}. Les frais indiqués sur {link} me semblent faux.",
        ),
        "refund": (
            "Toujours pas de remboursement pour {booking}, cela fait {hours} semaines que vous avez annulé le {flight}.",
            "Demande de remboursement pour mon voyage à {city} faite il y a longtemps. Dossier : {link}. Des nouvelles ?",
        ),
        "checkin": (
            "L'enregistrement en ligne pour le {flight} échoue : « passager introuvable ». Réservation {booking}.",
            "L'appli plante à l'écran du passeport, impossible de m'enregistrer. Je pars pour {city} dans {hours} heures !",
        ),
        "seat_meal": (
            "Est-il possible d'ajouter un repas végétarien à la réservation {booking} ? Je prends le {flight} demain.",
            "Nous sommes séparés sur le {flight} pour {city}, avec un enfant de deux ans. Pouvez-vous changer les sièges ? {booking}",
        ),
        "praise": (
            "Un grand merci à l'équipage du {flight} pour {city}, ils ont été adorables avec ma grand-mère.",
            "Vol tranquille et équipage très gentil sur le {flight}. Merci !",
        ),
        "complaint": (
            "{hours} heures d'attente au téléphone et la ligne a coupé. Le pire service client que j'aie connu.",
            "J'ai payé pour plus d'espace sur le {flight} et j'ai eu un siège cassé. Je veux être remboursé. {booking}",
        ),
    },
    "de": {
        "delay": (
            "Flug {flight} nach {city} schon wieder verspätet, jetzt {hours} Stunden. Am Gate weiß niemand etwas. Was ist los?",
            "Sitze seit Ewigkeiten am Gate für {flight}. Schaffe ich meinen Anschluss in {city} noch?",
        ),
        "cancellation": (
            "Mein Flug {flight} wurde gerade gestrichen und die App zeigt nichts an. Buchung {booking}. Was sind meine Optionen?",
            "Um Mitternacht eine SMS, dass {flight} nach {city} annulliert ist. Kein Hotel, keine Umbuchung. Ernsthaft?",
        ),
        "baggage_lost": (
            "Vor {hours} Stunden in {city} gelandet, mein Koffer nicht. Meine Meldung: {link}. Wo ist mein Gepäck?",
            "Mein Gepäck von Flug {flight} kam nie aufs Band. Buchung {booking}. Meine Medikamente sind da drin, bitte helfen Sie.",
        ),
        "baggage_damaged": (
            "Mein Koffer kam von {flight} mit gebrochenem Rad und gerissener Schale. Fotos: {link}",
            "Der Griff meiner Tasche wurde auf dem Weg nach {city} abgerissen. Wie melde ich den Schaden? Buchung {booking}",
        ),
        "rebooking": (
            "Kann ich die Buchung {booking} auf einen späteren Flug nach {city} umbuchen? Die Webseite zeigt nur einen Fehler.",
            "Ich muss mein Rückflugdatum ändern, Buchung {booking}. Die Gebühr auf {link} scheint falsch zu sein.",
        ),
        "refund": (
            "Warte immer noch auf die Erstattung für {booking}, seit {hours} Wochen, nachdem Sie {flight} gestrichen haben.",
            "Erstattung für meine Reise nach {city} vor langer Zeit beantragt. Vorgang: {link}. Gibt es Neuigkeiten?",
        ),
        "checkin": (
            "Online-Check-in für {flight} klappt nicht: „Passagier nicht gefunden“. Buchung {booking}.",
            "Die App stürzt beim Reisepass-Schritt ab, ich kann nicht einchecken. Flug nach {city} in {hours} Stunden!",
        ),
        "seat_meal": (
            "Kann ich ein vegetarisches Essen zur Buchung {booking} hinzufügen? Ich fliege morgen mit {flight}.",
            "Wir sitzen auf {flight} nach {city} getrennt, mit Kleinkind. Können Sie die Sitze ändern? {booking}",
        ),
        "praise": (
            "Großes Lob an die Crew von {flight} nach {city}, sie haben sich rührend um meine Oma gekümmert.",
            "Ruhiger Flug und eine sehr freundliche Crew auf {flight}. Danke!",
        ),
        "complaint": (
            "{hours} Stunden in der Warteschleife und dann wurde einfach aufgelegt. Schlechtester Kundenservice überhaupt.",
            "Für mehr Beinfreiheit auf {flight} bezahlt und einen kaputten Sitz bekommen. Ich will mein Geld zurück. {booking}",
        ),
    },
    "es": {
        "delay": (
            "El vuelo {flight} a {city} otra vez con retraso, ya van {hours} horas. En la puerta nadie sabe nada. ¿Qué pasa?",
            "Llevo siglos en la puerta esperando el {flight}. ¿Llegaré a mi conexión en {city}?",
        ),
        "cancellation": (
            "Acaban de cancelar mi vuelo {flight} y la app no muestra nada. Reserva {booking}. ¿Qué opciones tengo?",
            "SMS a medianoche: {flight} a {city} cancelado. Sin hotel, sin vuelo nuevo. ¿En serio?",
        ),
        "baggage_lost": (
            "Aterricé en {city} hace {hours} horas, mi maleta no. Mi reclamación está en {link}. ¿Dónde está mi equipaje?",
            "Mi equipaje del vuelo {flight} nunca salió por la cinta. Reserva {booking}. Mis medicinas están dentro, ayuda por favor.",
        ),
        "baggage_damaged": (
            "Mi maleta salió del {flight} con una rueda rota y la carcasa rajada. Fotos: {link}",
            "Me arrancaron el asa de la bolsa en el viaje a {city}. ¿Cómo pongo una reclamación? Reserva {booking}",
        ),
        "rebooking": (
            "¿Puedo cambiar la reserva {booking} a un vuelo más tarde a {city}? La web me da error todo el rato.",
            "Necesito cambiar la fecha de vuelta, reserva {booking}. La tarifa de cambio en {link} no me cuadra.",
        ),
        "refund": (
            "Sigo esperando el reembolso de {booking}, hace {hours} semanas que cancelasteis el {flight}.",
            "Pedí el reembolso de mi viaje a {city} hace mucho. Expediente: {link}. ¿Alguna novedad?",
        ),
        "checkin": (
            "El check-in online del {flight} falla: «pasajero no encontrado». Reserva {booking}.",
            "La app se cierra en la pantalla del pasaporte y no puedo hacer el check-in. ¡Vuelo a {city} en {hours} horas!",
        ),
        "seat_meal": (
            "¿Se puede añadir una comida vegetariana a la reserva {booking}? Vuelo mañana en el {flight}.",
            "Nos han sentado separados en el {flight} a {city} y viajamos con un bebé. ¿Podéis cambiar los asientos? {booking}",
        ),
        "praise": (
            "Mil gracias a la tripulación del {flight} a {city}, trataron genial a mi abuela.",
            "Vuelo tranquilo y una tripulación amabilísima en el {flight}. ¡Gracias!",
        ),
        "complaint": (
            "{hours} horas en espera al teléfono y luego se cortó la llamada. El peor servicio al cliente que he visto.",
            "Pagué por más espacio en el {flight} y me tocó un asiento roto. Quiero que me devolváis el dinero. {booking}",
        ),
    },
    "it": {
        "delay": (
            "Il volo {flight} per {city} è di nuovo in ritardo, già {hours} ore. Al gate nessuno sa niente. Cosa succede?",
        ),
        "cancellation": (
            "Il mio volo {flight} è stato appena cancellato e l'app non dice nulla. Prenotazione {booking}. Cosa posso fare?",
        ),
        "baggage_lost": (
            "Atterrata a {city} {hours} ore fa, la mia valigia no. La pratica è su {link}. Dov'è il mio bagaglio?",
        ),
        "baggage_damaged": ("La mia valigia è uscita dal {flight} con una ruota rotta. Foto: {link}",),
        "rebooking": (
            "Posso spostare la prenotazione {booking} su un volo più tardi per {city}? Il sito dà sempre errore.",
        ),
        "refund": (
            "Aspetto ancora il rimborso di {booking}, sono passate {hours} settimane dalla cancellazione del {flight}.",
        ),
        "checkin": (
            "Il check-in online per il {flight} non funziona: «passeggero non trovato». Prenotazione {booking}.",
        ),
        "seat_meal": (
            "È possibile aggiungere un pasto vegetariano alla prenotazione {booking}? Volo domani con il {flight}.",
        ),
        "praise": ("Grazie di cuore all'equipaggio del {flight} per {city}, gentilissimi con mia nonna.",),
        "complaint": (
            "{hours} ore in attesa al telefono e poi la linea è caduta. Il peggior servizio clienti di sempre.",
        ),
    },
    "pt": {
        "delay": (
            "O voo {flight} para {city} está atrasado outra vez, já são {hours} horas. No portão ninguém sabe de nada. O que se passa?",
        ),
        "cancellation": (
            "O meu voo {flight} acabou de ser cancelado e a app não mostra nada. Reserva {booking}. Quais são as opções?",
        ),
        "baggage_lost": (
            "Aterrei em {city} há {hours} horas, a minha mala não. O processo está em {link}. Onde está a minha bagagem?",
        ),
        "baggage_damaged": ("A minha mala saiu do {flight} com uma roda partida. Fotos: {link}",),
        "rebooking": (
            "Posso mudar a reserva {booking} para um voo mais tarde para {city}? O site dá sempre erro.",
        ),
        "refund": (
            "Continuo à espera do reembolso de {booking}, já passaram {hours} semanas desde que cancelaram o {flight}.",
        ),
        "checkin": ("O check-in online do {flight} falha: «passageiro não encontrado». Reserva {booking}.",),
        "seat_meal": (
            "É possível acrescentar uma refeição vegetariana à reserva {booking}? Voo amanhã no {flight}.",
        ),
        "praise": (
            "Muito obrigada à tripulação do {flight} para {city}, foram uns queridos com a minha avó.",
        ),
        "complaint": (
            "{hours} horas em espera ao telefone e depois a chamada caiu. O pior apoio ao cliente de sempre.",
        ),
    },
}

# A customer nudging their own earlier message before anyone answered.
_NUDGES: dict[str, tuple[str, ...]] = {
    "en": (
        "Any update on this? Still nothing.",
        "Hello?? {hours} hours and no answer.",
        "Adding my booking code: {booking}",
    ),
    "nl": (
        "Al nieuws hierover? Nog steeds niks.",
        "Hallo?? {hours} uur en geen antwoord.",
        "Mijn boekingscode is {booking}",
    ),
    "fr": (
        "Des nouvelles ? Toujours rien.",
        "Allô ?? {hours} heures sans réponse.",
        "Mon code de réservation : {booking}",
    ),
    "de": (
        "Gibt es schon was Neues? Immer noch nichts.",
        "Hallo?? {hours} Stunden und keine Antwort.",
        "Hier mein Buchungscode: {booking}",
    ),
    "es": (
        "¿Alguna novedad? Sigo sin saber nada.",
        "¿Hola?? {hours} horas sin respuesta.",
        "Mi código de reserva: {booking}",
    ),
    "it": (
        "Novità? Ancora niente.",
        "Pronto?? {hours} ore e nessuna risposta.",
        "Il mio codice di prenotazione: {booking}",
    ),
    "pt": (
        "Alguma novidade? Continua tudo igual.",
        "Olá?? {hours} horas sem resposta.",
        "O meu código de reserva: {booking}",
    ),
}

# A customer answering the brand's reply: thanks, still waiting, or the detail asked for.
_ANSWERS: dict[str, tuple[str, ...]] = {
    "en": (
        "Thanks, that helps a lot!",
        "Still no news though... it has been {hours} hours.",
        "Here is my booking code: {booking}",
    ),
    "nl": (
        "Dank je, dat helpt echt!",
        "Nog steeds geen nieuws... al {hours} uur.",
        "Hier is mijn boekingscode: {booking}",
    ),
    "fr": (
        "Merci, ça m'aide beaucoup !",
        "Toujours pas de nouvelles... ça fait {hours} heures.",
        "Voici mon code de réservation : {booking}",
    ),
    "de": (
        "Danke, das hilft sehr!",
        "Immer noch nichts Neues... seit {hours} Stunden.",
        "Hier ist mein Buchungscode: {booking}",
    ),
    "es": (
        "¡Gracias, me ayuda mucho!",
        "Sigo sin noticias... ya van {hours} horas.",
        "Aquí está mi código de reserva: {booking}",
    ),
    "it": (
        "Grazie, mi aiuta molto!",
        "Ancora nessuna notizia... sono passate {hours} ore.",
        "Ecco il mio codice di prenotazione: {booking}",
    ),
    "pt": (
        "Obrigado, ajuda muito!",
        "Ainda sem notícias... já passaram {hours} horas.",
        "Aqui está o meu código de reserva: {booking}",
    ),
}
_ANSWER_MOOD = ("happy", "angry", "neutral")

_GREETINGS: dict[str, tuple[str, ...]] = {
    "en": ("Hi!", "Hello team!"),
    "nl": ("Hoi!", "Goedemiddag!"),
    "fr": ("Bonjour !",),
    "de": ("Hallo!", "Guten Tag!"),
    "es": ("¡Hola!",),
    "it": ("Ciao!", "Buongiorno!"),
    "pt": ("Olá!", "Bom dia!"),
}

_CITIES = (
    "Amsterdam",
    "Paris",
    "Barcelona",
    "Nairobi",
    "Lima",
    "Bergen",
    "Lisbon",
    "Milan",
    "Munich",
    "Curaçao",
    "Singapore",
    "Toronto",
    "Cape Town",
    "Reykjavík",
    "São Paulo",
)

# Emoji by mood, including 4-byte code points and ZWJ sequences.
_EMOJI: dict[str, tuple[str, ...]] = {
    "angry": ("😡", "🤬", "😤", "🙄", "🤦‍♀️", "🤦‍♂️", "👎", "💔"),
    "sad": ("😢", "😩", "😰", "🥺", "🧳", "😞"),
    "happy": ("😍", "🙏", "👍", "✈️", "💙", "🥳", "👩‍✈️", "🧑‍✈️"),
    "neutral": ("🙏", "🤞", "✈️", "🧳", "👨‍👩‍👧‍👦", "⏰", "📱"),
}
_TOPIC_MOOD = {
    "delay": "angry",
    "cancellation": "angry",
    "baggage_lost": "sad",
    "baggage_damaged": "sad",
    "rebooking": "neutral",
    "refund": "angry",
    "checkin": "neutral",
    "seat_meal": "neutral",
    "praise": "happy",
    "complaint": "angry",
}
_HASHTAGS = {
    "delay": "#delayed",
    "cancellation": "#cancelled",
    "baggage_lost": "#lostluggage",
    "baggage_damaged": "#brokensuitcase",
    "refund": "#refund",
    "complaint": "#fail",
    "praise": "#thankyou",
}
_BOOKING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_URL = re.compile(r"https?://\S+")
_HASHTAG = re.compile(r"#\w+")


def _booking_code(rng: random.Random) -> str:
    return "".join(rng.choice(_BOOKING_ALPHABET) for _ in range(6))


@dataclass(frozen=True, slots=True)
class _Details:
    """Facts of one case, shared by every message of its thread."""

    flight: str
    booking: str
    city: str
    hours: int
    link: str


def _details(seed: int, root: int, topic: str) -> _Details:
    rng = random.Random(f"{seed}:{root}:details")
    booking = _booking_code(rng)
    flight = f"{FLIGHT_DESIGNATOR}{rng.randint(100, 1999)}"
    if topic == "baggage_damaged":
        link = f"https://example.com/photos/{rng.randrange(16**8):08x}"
    elif topic in ("baggage_lost", "refund"):
        link = f"https://example.com/claims/{booking}-{rng.randint(10, 99)}"
    else:
        link = f"https://example.com/booking/{booking}"
    return _Details(
        flight=flight, booking=booking, city=rng.choice(_CITIES), hours=rng.randint(2, 9), link=link
    )


def _typo(rng: random.Random, template: str) -> str:
    """One realistic slip (swap, drop or double a letter) in a plain word of the template."""
    words = template.split(" ")
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4]
    if not candidates:
        return template
    i = rng.choice(candidates)
    word = words[i]
    at = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    elif kind == 1:
        word = word[:at] + word[at + 1 :]
    else:
        word = word[:at] + word[at] + word[at:]
    words[i] = word
    return " ".join(words)


def _dress(rng: random.Random, body: str, *, mood: str, public: bool, language: str, hashtag: str) -> str:
    """Emoji, hashtag, greeting and the brand mention around a body text."""
    if rng.random() < 0.55:
        body = f"{body} {''.join(rng.choice(_EMOJI[mood]) for _ in range(rng.randint(1, 3)))}"
    if hashtag and rng.random() < 0.2:
        body = f"{body} {hashtag}"
    if not public:
        if rng.random() < 0.4:
            body = f"{rng.choice(_GREETINGS[language])} {body}"
        return body
    if rng.random() < 0.8:
        return f"@{BRAND_HANDLE} {body}"
    return f"{body} @{BRAND_HANDLE}"


# --- The stream -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draw:
    """The first random choices of message n, before threading is resolved."""

    wants_follow_up: bool
    candidate: int | None
    persona: int
    topic: str
    is_public: bool


@lru_cache(maxsize=8192)
def _draw(seed: int, follow_up_rate: float, n: int) -> _Draw:
    rng = random.Random(f"{seed}:{n}")
    wants = rng.random() < follow_up_rate
    back = 1 + int(rng.random() * FOLLOW_UP_LOOKBACK)
    pool = personas()
    persona = rng.choices(range(len(pool)), weights=_persona_weights())[0]
    topic = rng.choices(TOPICS, weights=_TOPIC_WEIGHTS)[0]
    is_public = rng.random() < PUBLIC_SHARE
    return _Draw(
        wants_follow_up=wants,
        candidate=n - back if n - back >= 0 else None,
        persona=persona,
        topic=topic,
        is_public=is_public,
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    n: int
    root: int
    parent: int | None
    persona: Persona
    topic: str
    is_public: bool


def _plan(spec: StreamSpec, n: int) -> _Plan:
    """Thread of message n: it follows up its candidate when the candidate chain reaches a
    thread start within MAX_THREAD_DEPTH steps, otherwise it starts a thread itself."""
    root: int | None = None
    current = n
    for _ in range(MAX_THREAD_DEPTH + 1):
        draw = _draw(spec.seed, spec.follow_up_rate, current)
        if not draw.wants_follow_up or draw.candidate is None:
            root = current
            break
        current = draw.candidate
    if root is None:
        root = n
    start = _draw(spec.seed, spec.follow_up_rate, root)
    own = _draw(spec.seed, spec.follow_up_rate, n)
    return _Plan(
        n=n,
        root=root,
        parent=None if root == n else own.candidate,
        persona=personas()[start.persona],
        topic=start.topic,
        is_public=start.is_public,
    )


def external_id(seed: int, n: int) -> str:
    return f"sim-{seed}-{n}"


def scheduled_at(spec: StreamSpec, started_at: datetime, n: int) -> datetime:
    """Platform time of message n: one interval apart, with a little deterministic jitter."""
    jitter = random.Random(f"{spec.seed}:{n}:clock").random() * _JITTER
    return started_at + timedelta(seconds=(n + jitter) * spec.interval_seconds)


def stream_message(spec: StreamSpec, started_at: datetime, n: int) -> InboundMessage:
    """Message number n of the stream."""
    plan = _plan(spec, n)
    persona = plan.persona
    details = _details(spec.seed, plan.root, plan.topic)
    rng = random.Random(f"{spec.seed}:{n}:text")
    mood = _TOPIC_MOOD[plan.topic]
    language = persona.language
    if plan.parent is None:
        template = rng.choice(_TEMPLATES[language][plan.topic])
    else:
        template = rng.choice(_NUDGES[language])
    if rng.random() < 0.18:
        template = _typo(rng, template)
    if rng.random() < 0.08:
        template = template.lower()
    body = template.format(
        flight=details.flight,
        booking=details.booking,
        city=details.city,
        hours=details.hours,
        link=details.link,
    )
    text = _dress(
        rng,
        body,
        mood=mood,
        public=plan.is_public,
        language=language,
        hashtag=_HASHTAGS.get(plan.topic, "") if plan.parent is None else "",
    )
    created_at = scheduled_at(spec, started_at, n)
    ext_id = external_id(spec.seed, n)
    parent_id = external_id(spec.seed, plan.parent) if plan.parent is not None else ""
    conversation_id = "" if plan.is_public else persona.dm_conversation_id
    kind = "direct_message" if not plan.is_public else ("reply" if parent_id else "mention")
    return InboundMessage(
        external_id=ext_id,
        author=persona.identity(),
        text=text,
        created_at=created_at,
        is_public=plan.is_public,
        in_reply_to_external_id=parent_id,
        conversation_id=conversation_id,
        language=language,
        raw=_payload(
            ext_id,
            kind,
            text,
            created_at,
            persona,
            parent_id,
            conversation_id,
            sim={"seed": spec.seed, "n": n, "topic": plan.topic, "thread": external_id(spec.seed, plan.root)},
        ),
    )


def stream(spec: StreamSpec, started_at: datetime, start: int, stop: int) -> list[InboundMessage]:
    """Messages start .. stop-1."""
    return [stream_message(spec, started_at, n) for n in range(start, stop)]


def answer_id(seed: int, reply_index: int) -> str:
    return f"sim-{seed}-a{reply_index}"


def answer_to_brand_reply(spec: StreamSpec, reply: BrandReply) -> InboundMessage | None:
    """The customer's reaction to a brand reply, or None when they leave it there."""
    # Seeded by the place of the reply only: never by database ids, which differ per run.
    rng = random.Random(f"{spec.seed}:answer:{reply.index}")
    if rng.random() >= spec.reply_follow_up_rate:
        return None
    persona = persona_by_id(reply.customer_id)
    if persona is None:
        return None
    low, high = ANSWER_DELAY_SECONDS
    created_at = reply.posted_at + timedelta(seconds=low + rng.random() * (high - low))
    choice = rng.randrange(len(_ANSWERS[persona.language]))
    body = _ANSWERS[persona.language][choice].format(hours=rng.randint(2, 9), booking=_booking_code(rng))
    text = _dress(
        rng, body, mood=_ANSWER_MOOD[choice], public=reply.is_public, language=persona.language, hashtag=""
    )
    ext_id = answer_id(spec.seed, reply.index)
    conversation_id = "" if reply.is_public else (reply.conversation_id or persona.dm_conversation_id)
    return InboundMessage(
        external_id=ext_id,
        author=persona.identity(),
        text=text,
        created_at=created_at,
        is_public=reply.is_public,
        in_reply_to_external_id=reply.platform_id,
        conversation_id=conversation_id,
        language=persona.language,
        raw=_payload(
            ext_id,
            "reply" if reply.is_public else "direct_message",
            text,
            created_at,
            persona,
            reply.platform_id,
            conversation_id,
            sim={"seed": spec.seed, "answers_reply": reply.index},
        ),
    )


def _payload(
    ext_id: str,
    kind: str,
    text: str,
    created_at: datetime,
    persona: Persona,
    in_reply_to: str,
    conversation_id: str,
    *,
    sim: dict[str, Any],
) -> dict[str, Any]:
    """What the fake platform's API would have returned for this post."""
    return {
        "id": ext_id,
        "type": kind,
        "created_at": created_at.isoformat(),
        "text": text,
        "lang": persona.language,
        "user": {
            "id": persona.external_id,
            "screen_name": persona.handle,
            "name": persona.display_name,
            "followers_count": persona.followers_count,
            "verified": persona.verified,
        },
        "in_reply_to_id": in_reply_to or None,
        "conversation_id": conversation_id or None,
        "entities": {
            "urls": [url.rstrip(".,!?;:)") for url in _URL.findall(text)],
            "hashtags": _HASHTAG.findall(text),
            "mentions": [BRAND_HANDLE] if f"@{BRAND_HANDLE}" in text else [],
        },
        "sim": sim,
    }
