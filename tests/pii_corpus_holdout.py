"""A second, held-out labelled PII corpus of free-text notes, unlike `tests/pii_corpus.py`.

The redactor was tuned against `tests/pii_corpus.py`; this corpus is built differently
so that its recall is measured on data nobody tuned on:

- first names come from the `gender_guesser` package's bundled dictionary (plain
  alphabetic names of three letters or more), not from Faker (whose lexicon the redactor
  uses) nor from the other corpus's lists; surnames from a hand-written list of locales
  the other corpus does not use (Turkish, Greek, Finnish, Hungarian, Swahili/Kikuyu,
  Filipino, Irish, Korean romanized, Brazilian Portuguese, Dutch);
- phones are North-American numbers with random area codes, unassigned ones included
  (`(232) 213-1582`, `578.644.7937`, `538-990-8191`, `+1 455 222 1632`), and foreign
  E.164 numbers (`+44 20 7946 0958`, `+49 30 901820` ...); SSNs are random
  `AAA-GG-SSSS` numbers with a valid-looking structure; any match with a real number is
  chance;
- emails are derived from the row's own name under `example.com`, `example.net` or
  `example.org`;
- a note mentions its own row's identifiers, sometimes formatted differently from the
  column (other phone separators, an SSN with spaces); names appear after titles
  (`Mr`, `Dr`, `Sig.`, `Frau` ...), at the start of a sentence, as "Surname, Firstname",
  in lowercase, or split by a line break between first and last name;
- clean notes hold no PII but decoys: amounts, dates, lab values, room numbers
  (`Room 4B-12`), ICD codes, dosages and capitalized non-name words (drug names, `Ward`,
  weekdays and months).

No value is disguised: `canonical` equals `value`. Notes are assembled in a Python loop
from one `random.Random` stream; the same arguments give an identical table.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from importlib import resources

import pandas as pd

from tests.pii_corpus import ColumnTruth, LabelledTable, Planted

NOTE_COLUMN = "note"
_MAX_COUNT = 10**8

_SURNAMES: tuple[str, ...] = (
    # Turkish
    "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Öztürk", "Aydın", "Arslan",
    "Doğan", "Kılıç", "Aslan", "Koç", "Kurt", "Özdemir",
    # Greek (romanized)
    "Papadopoulos", "Georgiou", "Nikolaidis", "Konstantinou", "Pappas", "Vlachos",
    "Dimitriou", "Karagiannis", "Oikonomou", "Makris", "Antoniou", "Christodoulou",
    "Theodorou", "Stavrou", "Alexiou",
    # Finnish
    "Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen", "Laine",
    "Heikkinen", "Koskinen", "Järvinen", "Lehtonen", "Lehtinen", "Saarinen", "Salminen",
    "Heinonen",
    # Hungarian
    "Nagy", "Kovács", "Tóth", "Szabó", "Horváth", "Varga", "Kiss", "Molnár", "Németh",
    "Farkas", "Balogh", "Papp", "Takács", "Juhász", "Lakatos",
    # Swahili / Kikuyu
    "Kamau", "Mwangi", "Njoroge", "Wanjiku", "Otieno", "Kiprono", "Mutua", "Wambui",
    "Njeri", "Kariuki", "Mwende", "Odhiambo", "Gitau", "Waweru", "Chege",
    # Filipino
    "Dela Cruz", "Bautista", "Villanueva", "Mercado", "Manalo", "Macaraeg", "Dimaculangan",
    "Pangilinan", "Magsaysay", "Salonga", "Tolentino", "Buenaventura", "Lacson",
    "Soriano", "Pacquiao",
    # Irish
    "O'Sullivan", "Murphy", "Byrne", "Ó Briain", "MacCarthy", "Gallagher", "Doherty",
    "Kavanagh", "Ní Bhriain", "Fitzgerald", "Brennan", "Quigley", "Donnelly",
    "Mac Giolla", "Flanagan",
    # Korean (romanized)
    "Kim", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han", "Shin",
    "Seo", "Kwon", "Hwang", "Ahn",
    # Brazilian Portuguese
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira",
    "Lima", "Gomes", "Ribeiro", "Carvalho", "Almeida", "Nascimento", "Araújo",
    # Dutch
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser",
    "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
)  # fmt: skip

_TITLES = ("Mr", "Mrs", "Dr", "Sig.", "Ing.", "Pt", "Frau", "Mme")
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_FOREIGN_PHONES = (
    # (format, digit groups): E.164 prefixes with drama or plausible-looking numbers.
    ("+44 20 {} {}", (4, 4)),
    ("+49 30 {}", (6,)),
    ("+33 1 {} {} {} {}", (2, 2, 2, 2)),
    ("+31 20 {} {}", (3, 4)),
    ("+61 2 {} {}", (4, 4)),
    ("+81 3 {} {}", (4, 4)),
)
_FOREIGN_SHARE = 0.15  # of the `phone` column
_ASCII_FOLD = str.maketrans({"ı": "i", "ş": "s", "ğ": "g", "ç": "c", "'": "", " ": ""})

# Public: `benchmarks/pii.py` hands drugs and wards to the redactor's allow list.
DRUGS = ("Metformin", "Lisinopril", "Atorvastatin", "Amoxicillin", "Warfarin", "Ibuprofen")
_DOSES = ("500 mg", "10 mg", "20 mg twice daily", "250 mg", "5 mg nightly", "1 g IV")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)  # fmt: skip
WARDS = ("Ward", "East Wing", "Cardiology", "Oncology Unit", "Pharmacy", "Radiology")
_ICD = ("E11.9", "I10", "J45.909", "M54.5", "N39.0", "K21.9", "F32.A", "Z79.4")
_LABS = (
    ("HbA1c {:.1f}%", 4.8, 11.5),
    ("creatinine {:.2f} mg/dL", 0.5, 2.4),
    ("potassium {:.1f} mmol/L", 3.1, 5.6),
    ("INR {:.1f}", 0.9, 3.8),
    ("LDL {:.0f} mg/dL", 60, 210),
)

_CLEAN_SENTENCES = (
    "Started {drug} {dose} on {weekday}.",
    "Transferred to {ward}, {room}.",
    "{lab} on {date}; repeat in {months} months.",
    "Coded {icd}; copay {amount} collected.",
    "Seen in {room} on {weekday} {day} {month}.",
    "Plan: continue {drug}, review in {month}.",
    "Invoice total {amount} due {date}.",
    "{ward} rounds: vitals stable, {lab}.",
    "Allergy to {drug} noted. Dose held.",
    "Follow-up {month} {day}, {room}.",
)
_PERSON_SENTENCES = (
    "Spoke with {v} about the {drug} dose.",
    "Family contact: {v}.",
    "Seen together with {v} in {room}.",
    "Referral letter addressed to {v}.",
)
_PERSON_STARTS = (
    "{v} reports less pain since {weekday}.",
    "{v} called the {ward} desk.",
    "{v} missed the {month} appointment.",
)
_PHONE_SENTENCES = (
    "Callback {v}.",
    "Best number is {v} after 5pm.",
    "Left a voicemail on {v} ({weekday}).",
    "Tel: {v}",
)
_EMAIL_SENTENCES = (
    "Results emailed to {v}.",
    "Prefers contact at {v}.",
    "Portal login: {v}",
)
_SSN_SENTENCES = (
    "SSN {v} on file.",
    "Insurance form lists social security no. {v}.",
    "Verified identity, SSN: {v}.",
)


def holdout_notes(count: int, *, seed: int = 0, pii_fraction: float = 0.5) -> LabelledTable:
    """Draw `count` people with identifier columns and a free-text `note` each.

    Args:
        count: Number of rows, 1 to 10**8.
        seed: Non-negative seed; the same arguments give an identical table.
        pii_fraction: Share of notes that mention the row's own identifiers, exact up to
            rounding; the rest hold decoys only.

    Returns:
        A table with `full_name`, `email`, `phone`, `ssn` (direct identifiers) and `note`
        (free text); `planted` lists every value placed in a note.

    Raises:
        ValueError: when an argument is out of range.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_COUNT:
        raise ValueError(f"count must be an int from 1 to {_MAX_COUNT}, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 0.0 <= pii_fraction <= 1.0:
        raise ValueError(f"pii_fraction must be in [0, 1], got {pii_fraction!r}")
    rand = random.Random(f"privgate-holdout-{seed}")
    firsts = _first_names()
    holds_pii = set(rand.sample(range(count), round(pii_fraction * count)))
    columns: dict[str, list[str]] = {k: [] for k in ("full_name", "email", "phone", "ssn")}
    notes: list[str] = []
    planted: list[Planted] = []
    for row in range(count):
        first, last = rand.choice(firsts), rand.choice(_SURNAMES)
        phone_digits, phone = _phone(rand)
        ssn_parts = _ssn(rand)
        person = {
            "first": first,
            "last": last,
            "email": _email(first, last, rand),
            "phone": phone,
            "phone_digits": phone_digits,
            "ssn": ssn_parts,
        }
        columns["full_name"].append(f"{first} {last}")
        columns["email"].append(person["email"])
        columns["phone"].append(phone)
        columns["ssn"].append("-".join(ssn_parts))
        if row in holds_pii:
            text, values = _pii_note(person, rand)
            planted.extend(
                Planted(row, NOTE_COLUMN, entity, value, value, False) for entity, value in values
            )
        else:
            text = _clean_note(rand)
        notes.append(text)
    frame = pd.DataFrame({**columns, NOTE_COLUMN: notes}, dtype=object)
    truths = (
        ColumnTruth("full_name", "direct_identifier", "PERSON"),
        ColumnTruth("email", "direct_identifier", "EMAIL_ADDRESS"),
        ColumnTruth("phone", "direct_identifier", "PHONE_NUMBER"),
        ColumnTruth("ssn", "direct_identifier", "US_SSN"),
        ColumnTruth(NOTE_COLUMN, "free_text", None),
    )
    return LabelledTable(frame=frame, columns=truths, planted=tuple(planted))


@functools.cache
def _first_names() -> tuple[str, ...]:
    """Return gender_guesser's first names: plain ASCII letters, three or more, sorted."""
    data = resources.files("gender_guesser").joinpath("data", "nam_dict.txt")
    names: set[str] = set()
    with data.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2:
                continue
            name = fields[1]
            if len(name) >= 3 and name.isascii() and name.isalpha():
                names.add(name)
    return tuple(sorted(names))


def _digits(rand: random.Random, width: int) -> str:
    return "".join(str(rand.randrange(10)) for _ in range(width))


def _phone(rand: random.Random) -> tuple[tuple[str, ...] | None, str]:
    """Return (North-American digit groups or None for foreign, the column's phone)."""
    if rand.random() < _FOREIGN_SHARE:
        pattern, widths = rand.choice(_FOREIGN_PHONES)
        return None, pattern.format(*(_digits(rand, w) for w in widths))
    # Random area codes and exchanges, 2..9 first digit: many are unassigned.
    groups = (
        str(rand.randint(2, 9)) + _digits(rand, 2),
        str(rand.randint(2, 9)) + _digits(rand, 2),
        _digits(rand, 4),
    )
    return groups, _format_na(groups, rand.randrange(4))


def _format_na(groups: tuple[str, ...], style: int) -> str:
    area, exchange, line = groups
    return (
        f"({area}) {exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"{area}-{exchange}-{line}",
        f"+1 {area} {exchange} {line}",
    )[style]


def _ssn(rand: random.Random) -> tuple[str, str, str]:
    area = rand.randint(1, 899)
    while area == 666:
        area = rand.randint(1, 899)
    return f"{area:03d}", f"{rand.randint(1, 99):02d}", f"{rand.randint(1, 9999):04d}"


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def _email(first: str, last: str, rand: random.Random) -> str:
    f, s = _ascii(first), _ascii(last)
    local = rand.choice(
        (
            f"{f}.{s}",
            f"{f}_{s}",
            f"{f[0]}{s}",
            f"{f}.{s}{rand.randint(1, 99)}",
            f"{s}.{f}",
            f"{f}{s[0]}{rand.randint(1950, 2005)}",
            f"{f}_{s}_{rand.randint(1, 9)}",
        )
    )
    return f"{local}@{rand.choice(_EMAIL_DOMAINS)}"


def _fill(rand: random.Random) -> dict[str, str]:
    lab, low, high = rand.choice(_LABS)
    money = rand.uniform(4.0, 8999.0)
    return {
        "drug": rand.choice(DRUGS),
        "dose": rand.choice(_DOSES),
        "weekday": rand.choice(_WEEKDAYS),
        "month": rand.choice(_MONTHS),
        "day": str(rand.randint(1, 28)),
        "months": str(rand.randint(2, 12)),
        "ward": rand.choice(WARDS),
        "room": f"Room {rand.randint(1, 9)}{chr(65 + rand.randrange(6))}-{rand.randint(1, 40)}",
        "lab": lab.format(rand.uniform(low, high)),
        "date": f"{rand.randint(2019, 2025)}-{rand.randint(1, 12):02d}-{rand.randint(1, 28):02d}",
        "icd": rand.choice(_ICD),
        "amount": f"${money:,.2f}" if rand.random() < 0.5 else f"EUR {money:.2f}",
    }


def _join(sentences: list[str], rand: random.Random) -> str:
    out = sentences[0]
    for sentence in sentences[1:]:
        out += rand.choice((" ", " ", "\n", "\n\n")) + sentence
    return out


def _clean_note(rand: random.Random) -> str:
    fill = _fill(rand)
    chosen = rand.sample(_CLEAN_SENTENCES, rand.randint(2, 4))
    return _join([s.format(**fill) for s in chosen], rand)


def _name_mention(person: dict, rand: random.Random) -> tuple[str, str, bool]:
    """Return (the name as written, a sentence holding it, whether it starts the note)."""
    first, last = person["first"], person["last"]
    style = rand.randrange(6)
    if style == 0:  # after a title: full name or surname only
        value = rand.choice((f"{first} {last}", last))
        title = rand.choice(_TITLES)
        return value, rand.choice(_PERSON_SENTENCES).replace("{v}", f"{title} {value}"), False
    if style == 1:  # start of a sentence
        value = f"{first} {last}"
        return value, rand.choice(_PERSON_STARTS).replace("{v}", value), True
    if style == 2:  # "Surname, Firstname"
        value = f"{last}, {first}"
        return value, f"Patient name: {value}.", False
    if style == 3:  # all lowercase
        value = f"{first} {last}".lower()
        return value, rand.choice(_PERSON_SENTENCES).replace("{v}", value), False
    if style == 4:  # split across a line break
        value = f"{first}\n{last}"
        return value, f"Discussed with {value} by phone.", False
    value = f"{first} {last}"
    return value, rand.choice(_PERSON_SENTENCES).replace("{v}", value), False


def _phone_mention(person: dict, rand: random.Random) -> str:
    groups = person["phone_digits"]
    if rand.random() < 0.5:
        return person["phone"]
    if groups is None:  # foreign: other separators
        return person["phone"].replace(" ", rand.choice(("-", ".")), 2)
    return rand.choice(
        (
            _format_na(groups, rand.randrange(4)),
            "{}/{}-{}".format(*groups),
            "{} {} {}".format(*groups),
            "1-{}-{}-{}".format(*groups),
        )
    )


def _pii_note(person: dict, rand: random.Random) -> tuple[str, list[tuple[str, str]]]:
    """Return a note mentioning 1 to 3 of the person's identifiers, and what it holds."""
    fill = _fill(rand)
    entities = rand.sample(
        ("PERSON", "PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "US_SSN"), rand.randint(1, 3)
    )
    entities = list(dict.fromkeys(entities))
    values: list[tuple[str, str]] = []
    leading: list[str] = []
    sentences: list[str] = [s.format(**fill) for s in rand.sample(_CLEAN_SENTENCES, 2)]
    for entity in entities:
        if entity == "PERSON":
            value, sentence, starts = _name_mention(person, rand)
            sentence = sentence.replace("{v}", value)
            (leading if starts else sentences).append(sentence.format(**fill))
            values.append((entity, value))
            continue
        if entity == "PHONE_NUMBER":
            value, templates = _phone_mention(person, rand), _PHONE_SENTENCES
        elif entity == "EMAIL_ADDRESS":
            value, templates = person["email"], _EMAIL_SENTENCES
        else:
            value = rand.choice(("-", "-", " ")).join(person["ssn"])
            templates = _SSN_SENTENCES
        sentences.append(rand.choice(templates).format(v=value, **fill))
        values.append((entity, value))
    rand.shuffle(sentences)
    return _join(leading + sentences, rand), values
