"""A seeded, labelled PII corpus of LLM-like answers, and a streaming simulator to run it through.

Shared by ``benchmarks.pii`` and ``tests/detectors/test_pii_corpus.py`` so the benchmark figures
and the test thresholds are about the same data.

Every supported entity type appears ``per_type`` times, written the way assistants write them
("Sure! You can reach Ana at ana.lopez@example.org."), in the formats people use (grouped and
compact cards and IBANs, national and international phone numbers of several countries, ...),
mixed with filler prose and *hard negatives*: things a careless recogniser takes for PII (order
numbers, ISBNs, dates, version strings, Luhn-failing card-like numbers, UUIDs, git SHAs, prices,
times, MAC addresses, invalid SSNs and IBANs, long identifiers, paths and URLs). Phone numbers come
from Faker's per-country generators, kept only when ``phonenumbers`` deems them valid (the
definition of the entity), and written as Faker wrote them or in a standard format.

National IDs come from Faker's generators (SIN, DNI/NIF, NIE, NIR, codice fiscale) and, for Aadhaar,
whose Faker generator uses Luhn instead of Verhoeff, from a Verhoeff implementation here that works
on the dihedral group directly rather than on the usual tables, so it does not share a bug with
guard's. NIRs of Corsica (department 2A/2B) are drawn again: guard does not recognise them. Their
near misses have one check digit or letter wrong, or are a valid bare number without the cue word
the recogniser needs; one that happens to be a valid phone number is drawn again (it is a phone).
"""

from __future__ import annotations

import base64
import ipaddress
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import phonenumbers
from faker import Faker
from faker.providers.ssn.it_IT import checksum as it_checksum

from guard.detectors.base import Scanner
from guard.detectors.pii import DEFAULT_REGIONS
from guard.types import Finding

TYPES: tuple[str, ...] = (
    "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6",
    "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "GITHUB_TOKEN", "PRIVATE_KEY", "SECRET",
    "IN_AADHAAR", "CA_SIN", "ES_DNI", "ES_NIE", "FR_NIR", "IT_FISCAL_CODE",
)

BASE62 = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Entity:
    start: int
    end: int
    label: str


@dataclass(frozen=True, slots=True)
class Doc:
    text: str
    entities: tuple[Entity, ...]


@dataclass(frozen=True, slots=True)
class Corpus:
    docs: tuple[Doc, ...]
    seed: int
    per_type: int
    n_negatives: int

    def counts(self) -> dict[str, int]:
        out = {t: 0 for t in TYPES}
        for doc in self.docs:
            for e in doc.entities:
                out[e.label] += 1
        return out


_TEMPLATES: dict[str, tuple[str, ...]] = {
    "EMAIL": (
        "Sure! You can reach {name} at {x}.",
        "Send the signed form to {x} before Friday.",
        "Contact: {x}",
        "- Email: {x}\n",
        "Her work address is <{x}>, but she rarely checks it.",
        "I've CC'd {x} on the thread.",
        "Reply-To: \"{name}\" <{x}>",
    ),
    "PHONE": (
        "You can call {name} at {x}.",
        "Phone: {x}",
        "Their support line is {x} (Mon-Fri, 9-5).",
        "- Mobile: {x}\n",
        "If it's urgent, ring {x} and ask for {name}.",
        "Tel. {x}, fax not available.",
    ),
    "CREDIT_CARD": (
        "The card on file is {x}, expiring {exp}.",
        "Card number: {x}",
        "Use the card {x} for the booking.",
        "- Payment: {x} (CVV on the back)\n",
        "He paid with {x} last time.",
    ),
    "IBAN": (
        "Please transfer the amount to IBAN {x}.",
        "Bank: {company}, IBAN: {x}",
        "Beneficiary {name}, account {x}, reference {word}.",
        "- IBAN: {x}\n",
    ),
    "US_SSN": (
        "His SSN is {x}.",
        "Social Security Number: {x}",
        "The form lists {name}'s social security number as {x}.",
        "- SSN: {x}\n",
    ),
    "IPV4": (
        "The server is reachable at {x}.",
        "Add {x} to the allowlist.",
        "Run `ssh admin@{x}` to connect.",
        "The request came from {x}:{port}.",
        "Route traffic for {x}/24 through the gateway.",
        "- Host: {x}\n",
    ),
    "IPV6": (
        "The host's IPv6 address is {x}.",
        "Try `ping6 {x}` first.",
        "Listen on [{x}]:{port} instead.",
        "- IPv6: {x}\n",
        "The logs show {x} as the source.",
    ),
    "AWS_ACCESS_KEY": (
        "AWS_ACCESS_KEY_ID={x}\n",
        "Your access key ID is {x}.",
        "Set `aws_access_key_id = {x}` in ~/.aws/credentials.",
        "The leaked key ({x}) was rotated.",
    ),
    "AWS_SECRET_KEY": (
        "aws_secret_access_key = {x}\n",
        "AWS_SECRET_ACCESS_KEY={x}\n",
        "The AWS secret is {x}, keep it private.",
        "Secret access key: {x}",
    ),
    "GITHUB_TOKEN": (
        "export GITHUB_TOKEN={x}\n",
        "Use the token {x} in the Authorization header.",
        "My personal access token is `{x}`.",
        "- token: {x}\n",
    ),
    "PRIVATE_KEY": (
        "Here is the key you asked for:\n\n{x}\n\nKeep it safe.",
        "```\n{x}\n```",
        "Paste this into id_rsa:\n{x}\n",
    ),
    "SECRET": (
        "OPENAI_API_KEY={x}\n",
        "Set `api_key = \"{x}\"` in the config.",
        "The Stripe key is {x}.",
        "- api token: {x}\n",
        "Authorization: Bearer {x}\n",
    ),
    "IN_AADHAAR": (
        "Her Aadhaar number is {x}.",
        "Aadhaar: {x}",
        "- Aadhaar no.: {x}\n",
        "The e-KYC matched {name}'s Aadhaar {x} with the UIDAI records.",
        "ID on the form: {x}",
        "Please verify the identity number {x} with the applicant.",
    ),
    "CA_SIN": (
        "His SIN is {x}.",
        "Social Insurance Number: {x}",
        "- SIN: {x}\n",
        "Her social insurance number ({x}) is on the T4 slip.",
        "NAS : {x}",
    ),
    "ES_DNI": (
        "DNI: {x}",
        "Su DNI es {x}.",
        "The tenant's NIF is {x}, please keep it on file.",
        "- NIF: {x}\n",
        "{name} signed the contract with ID {x}.",
    ),
    "ES_NIE": (
        "NIE: {x}",
        "Her NIE is {x}, issued in Madrid.",
        "- NIE: {x}\n",
        "The foreigner identity number {x} appears on the TIE card.",
    ),
    "FR_NIR": (
        "Numéro de sécurité sociale : {x}",
        "His social security number (NIR) is {x}.",
        "- NIR: {x}\n",
        "The Carte Vitale of {name} shows {x}.",
    ),
    "IT_FISCAL_CODE": (
        "Codice fiscale: {x}",
        "Her Italian tax code is {x}.",
        "- CF: {x}\n",
        "Il codice fiscale di {name} è {x}.",
    ),
}

# A bare Aadhaar number is only recognised after a cue word: these templates have one.
_CUED_TEMPLATES: dict[str, tuple[str, ...]] = {
    "IN_AADHAAR": _TEMPLATES["IN_AADHAAR"][:4],
}

_FILLER = (
    "Here's a quick summary of what I found.",
    "Let me know if you need anything else!",
    "I hope this helps.",
    "Below are the details you requested.",
    "Note that this information may be outdated.",
    "First, make sure you have the latest version installed.",
    "Then restart the service and check the logs.",
    "Great question!",
    "There are 3 steps to follow, and the 2nd one is optional.",
    "Over 1,000,000 people use it every day.",
)


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# Verhoeff over the dihedral group D5: 0-4 are rotations, 5-9 reflections.
_VERHOEFF_PERM = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _d5(j: int, k: int) -> int:
    if j < 5:
        return (j + k) % 5 if k < 5 else 5 + (j + k - 5) % 5
    return 5 + (j - 5 - k) % 5 if k < 5 else (j - k) % 5


def _verhoeff_digit(body: str) -> str:
    c = 0
    for i, ch in enumerate(reversed(body)):
        x = int(ch)
        for _ in range((i + 1) % 8):
            x = _VERHOEFF_PERM[x]
        c = _d5(c, x)
    return str((5 - c) % 5 if c < 5 else c)


def _is_phone(value: str) -> bool:
    """A near miss that is a valid number in a region guard tries is a phone, not a negative."""
    return any(
        any(True for _ in phonenumbers.PhoneNumberMatcher(value, region,
                                                         leniency=phonenumbers.Leniency.VALID))
        for region in DEFAULT_REGIONS
    )


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


class _Gen:
    """Entity and negative generators over one seeded Faker + Random pair."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.locales: dict[str, Faker] = {}
        for i, loc in enumerate(("en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "es_ES", "it_IT", "nl_NL",
                                 "en_CA")):
            f = Faker(loc)
            f.seed_instance(seed + i + 1)
            self.locales[loc] = f

    # -- entities -------------------------------------------------------------------------

    def email(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return self.fake.email()
        if r < 0.7:
            return self.fake.company_email()
        first, last = self.fake.first_name().lower(), self.fake.last_name().lower()
        tag = self.rng.choice(["", "+news", "+work", ".jr", "_"])
        domain = self.rng.choice(["mail.example.co.uk", "example.org", "uni-berlin.de", "corp.example.com"])
        return f"{first}.{last}{tag}{self.rng.randint(1, 99)}@{domain}"

    def phone(self) -> str:
        regions = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "en_IN": "IN"}
        while True:
            loc, region = self.rng.choice(list(regions.items()))
            raw = re.split(r"x|ext", self.locales[loc].phone_number())[0].strip()
            try:
                num = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(num):
                continue
            style = self.rng.random()
            if style < 0.5:
                return raw
            fmt = self.rng.choice([
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ])
            return phonenumbers.format_number(num, fmt)

    def card(self) -> str:
        kind = self.rng.choice(
            ["visa16", "visa16", "visa13", "visa19", "mastercard", "mastercard", "amex",
             "discover", "diners", "jcb15", "jcb16"]
        )
        digits = self.fake.credit_card_number(kind)
        style = self.rng.random()
        if style < 0.3:
            return digits
        sep = " " if style < 0.75 else "-"
        n = len(digits)
        sizes = {15: [4, 6, 5], 14: [4, 6, 4], 13: [4, 4, 5], 16: [4, 4, 4, 4], 19: [4, 4, 4, 4, 3]}[n]
        if kind == "jcb15":
            sizes = [4, 4, 4, 3]
        parts, i = [], 0
        for size in sizes:
            parts.append(digits[i:i + size])
            i += size
        return sep.join(parts)

    def iban(self) -> str:
        loc = self.rng.choice(["de_DE", "en_GB", "fr_FR", "es_ES", "it_IT", "nl_NL"])
        compact = self.locales[loc].iban()
        if self.rng.random() < 0.5:
            return compact
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))

    def ssn(self) -> str:
        value = self.fake.ssn()
        return value if self.rng.random() < 0.85 else value.replace("-", " ")

    def ipv4(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return self.fake.ipv4_public()
        if r < 0.8:
            return self.fake.ipv4_private()
        return self.fake.ipv4()

    def ipv6(self) -> str:
        full = self.fake.ipv6()
        r = self.rng.random()
        if r < 0.4:
            return full
        if r < 0.85:
            return ipaddress.IPv6Address(full).compressed
        prefix = self.rng.choice(["2001:db8:", "fe80::", "2600:1f18:"])
        tail = ":".join(f"{self.rng.randrange(1, 0xFFFF):x}" for _ in range(self.rng.randint(1, 3)))
        return ipaddress.IPv6Address(prefix + ("" if prefix.endswith("::") else ":") + tail).compressed

    def aws_access_key(self) -> str:
        return self.rng.choice(["AKIA", "ASIA"]) + _rand(self.rng, string.ascii_uppercase + "234567", 16)

    def aws_secret_key(self) -> str:
        while True:
            key = _rand(self.rng, BASE62 + "+/", 40)
            if any(c.isdigit() for c in key) and any(c.isupper() for c in key) and any(
                c.islower() for c in key
            ):
                return key

    def github_token(self) -> str:
        if self.rng.random() < 0.8:
            return self.rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _rand(self.rng, BASE62, 36)
        return "github_pat_" + _rand(self.rng, BASE62, 22) + "_" + _rand(self.rng, BASE62, 59)

    def private_key(self) -> str:
        kind = self.rng.choice(["RSA ", "", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "])
        lines = []
        for _ in range(self.rng.randint(3, 8)):
            lines.append(base64.b64encode(self.rng.randbytes(48)).decode())
        lines.append(base64.b64encode(self.rng.randbytes(self.rng.randint(6, 40))).decode())
        body = "\n".join(lines)
        return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"

    def secret(self) -> str:
        r = self.rng.random()
        if r < 0.2:
            return "sk-" + _rand(self.rng, BASE62, 48)
        if r < 0.35:
            return "sk-proj-" + _rand(self.rng, BASE62 + "-_", 56)
        if r < 0.5:
            return self.rng.choice(["sk_live_", "sk_test_", "rk_live_"]) + _rand(self.rng, BASE62, 24)
        if r < 0.6:
            return "xoxb-" + _rand(self.rng, string.digits, 12) + "-" + _rand(
                self.rng, string.digits, 13) + "-" + _rand(self.rng, BASE62, 24)
        if r < 0.7:
            return "glpat-" + _rand(self.rng, BASE62 + "-_", 20)
        if r < 0.85:
            return _rand(self.rng, BASE62, self.rng.randint(32, 64))
        return base64.b64encode(self.rng.randbytes(self.rng.choice([24, 30, 33, 48]))).decode()

    def _aadhaar_digits(self) -> str:
        body = str(self.rng.randint(2, 9)) + _rand(self.rng, string.digits, 10)
        return body + _verhoeff_digit(body)

    def aadhaar(self) -> str:
        digits = self._aadhaar_digits()
        r = self.rng.random()
        if r < 0.25:
            return digits
        sep = " " if r < 0.85 else "-"
        return sep.join((digits[:4], digits[4:8], digits[8:]))

    def sin(self) -> str:
        value = self.locales["en_CA"].ssn()  # "ddd ddd ddd"
        r = self.rng.random()
        if r < 0.6:
            return value
        return value.replace(" ", "-" if r < 0.8 else "")

    def dni(self) -> str:
        value = self.locales["es_ES"].nif()
        r = self.rng.random()
        if r < 0.7:
            return value
        if r < 0.9:
            return f"{value[:8]}-{value[8]}"
        return f"{value[:2]}.{value[2:5]}.{value[5:8]}-{value[8]}"

    def nie(self) -> str:
        value = self.locales["es_ES"].nie()
        return value if self.rng.random() < 0.7 else f"{value[0]}-{value[1:8]}-{value[8]}"

    def _nir_digits(self) -> str:
        while True:
            value = self.locales["fr_FR"].ssn()
            if value.isdigit():  # not Corsica (2A/2B)
                return value

    def nir(self) -> str:
        v = self._nir_digits()
        r = self.rng.random()
        if r < 0.5:
            return v
        if r < 0.9:
            return f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}"
        return f"{v[:13]} {v[13:]}"

    def fiscal_code(self) -> str:
        code = self.locales["it_IT"].ssn()
        if self.rng.random() < 0.1:  # omocodia: the rightmost digits written as letters
            chars = list(code[:15])
            for pos in (14, 13, 12, 10, 9, 7, 6)[: self.rng.randint(1, 3)]:
                chars[pos] = "LMNPQRSTUV"[int(chars[pos])]
            body = "".join(chars)
            code = body + it_checksum(body)
        return code

    # -- national ID near misses ---------------------------------------------------------

    def _not_a_phone(self, make: Callable[[], str]) -> str:
        while True:
            value = make()
            if not _is_phone(value):
                return value

    def _not_a_card(self, value: str) -> str:
        """A bare 15-digit number with a legacy JCB prefix and a right Luhn digit is a card."""
        while value[:4] in ("1800", "2131") and _luhn_digit(value[:-1]) == value[-1]:
            value = value[:-1] + str((int(value[-1]) + 1) % 10)
        return value

    def _id_near_miss(self) -> str:
        rng = self.rng

        def wrong_digit(value: str) -> str:  # the last digit replaced by another
            return value[:-1] + str((int(value[-1]) + rng.randint(1, 9)) % 10)

        def wrong_letter(value: str) -> str:
            return value[:-1] + rng.choice([c for c in string.ascii_uppercase if c != value[-1]])

        def grouped(d: str, sizes: Sequence[int]) -> str:
            out, i = [], 0
            for n in sizes:
                out.append(d[i:i + n])
                i += n
            return " ".join(out)

        choices: list[Callable[[], str]] = [
            lambda: "Aadhaar " + self._not_a_phone(
                lambda: grouped(wrong_digit(self._aadhaar_digits()), (4, 4, 4))) + " was rejected.",
            lambda: "Her Aadhaar number is " + self._not_a_phone(
                lambda: wrong_digit(self._aadhaar_digits())) + ", which fails its check.",
            lambda: "Order " + self._not_a_phone(self._aadhaar_digits) + " has shipped.",
            lambda: "SIN " + self._not_a_phone(
                lambda: wrong_digit(self.locales["en_CA"].ssn())) + " is not valid.",
            lambda: "Invoice " + self._not_a_phone(self.locales["en_CA"].ssn) + " was paid.",
            lambda: f"DNI {wrong_letter(self.locales['es_ES'].nif())} has a typo.",
            lambda: f"NIE {wrong_letter(self.locales['es_ES'].nie())} has a typo.",
            lambda: "NIR " + self._not_a_phone(
                lambda: grouped(wrong_digit(self._nir_digits()), (1, 2, 2, 2, 3, 3, 2))) + " is wrong.",
            lambda: f"The codice fiscale {wrong_letter(self.locales['it_IT'].ssn())} does not check out.",
            lambda: "Dossier " + self._not_a_phone(lambda: self._not_a_card(
                wrong_digit(self._nir_digits()))) + " was archived.",
        ]
        return rng.choice(choices)()

    # -- hard negatives -------------------------------------------------------------------

    def negative(self) -> str:
        rng, fake = self.rng, self.fake
        d = string.digits
        choices: list[Callable[[], str]] = [
            lambda: f"Your order #{_rand(rng, d, rng.randint(6, 12))} has shipped.",
            lambda: f"Order number: {_rand(rng, d, 3)}-{_rand(rng, d, 7)}-{_rand(rng, d, 7)}.",
            lambda: f"Reference ORD-{rng.randint(2015, 2025)}-{_rand(rng, d, 6)} was refunded.",
            lambda: f"See ISBN {self._isbn()} for the second edition.",
            lambda: f"The meeting was on {fake.date()} at {fake.time()}.",
            lambda: f"Deadline: {fake.date(pattern=rng.choice(['%d/%m/%Y', '%m/%d/%Y', '%d.%m.%Y']))}.",
            lambda: f"Logged at {fake.iso8601()}Z by the cron job.",
            lambda: f"Upgrade to v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)} first.",
            lambda: f"Tested with version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}.",
            lambda: f"The build {'.'.join(str(rng.randint(0, 99)) for _ in range(5))} is broken.",
            lambda: f"Pin it to v{'.'.join(str(rng.randint(0, 20)) for _ in range(4))} for now.",
            lambda: f"The number {self._bad_card()} is not a valid card.",
            lambda: f"Request id {fake.uuid4()} failed.",
            lambda: f"Fixed in commit {fake.sha1()} (short: {fake.sha1()[:7]}).",
            lambda: f"The SHA-256 digest is {fake.sha256()}.",
            lambda: f"It costs ${rng.randint(1, 9)},{_rand(rng, d, 3)}.{_rand(rng, d, 2)} or €{rng.randint(1, 999)}.{_rand(rng, d, 2)}.",
            lambda: f"Total: {rng.randint(100, 99999)}.00 USD, paid {fake.date()}.",
            lambda: f"The store opens at {rng.randint(6, 11)}:{rng.choice(['00', '15', '30', '45'])} am and closes at {rng.randint(17, 23)}:00.",
            lambda: f"Uptime was {rng.randint(1, 99)}:{_rand(rng, d, 2)}:{_rand(rng, d, 2)} yesterday.",
            lambda: f"Its MAC address is {fake.mac_address()}.",
            lambda: f"The SSN {rng.choice(['000', '666', '9' + _rand(rng, d, 2)])}-{_rand(rng, d, 2)}-{_rand(rng, d, 4)} is invalid.",
            lambda: f"The IBAN {self._bad_iban()} has a typo.",
            lambda: f"Ship to zip code {_rand(rng, d, 5)}, tracking 1Z{_rand(rng, string.ascii_uppercase + d, 16)}.",
            lambda: f"Call the function {rng.choice(['getUserProfileByIdentifier', 'AbstractSingletonProxyFactoryBean', 'handleIncomingWebhookEventPayload2', 'convert_to_snake_case_identifier_v2'])}() here.",
            lambda: f"Rename it to {self._identifier()} before merging.",
            lambda: f"The file is in /usr/local/lib/python3.{rng.randint(8, 12)}/site-packages/numpy/core/include.",
            lambda: f"See https://github.com/{fake.user_name()}/{fake.word()}-{fake.word()}/blob/main/src/index.ts for details.",
            lambda: f"Pi is roughly 3.{_rand(rng, d, rng.randint(4, 9))} and e is 2.71828.",
            lambda: f"In {rng.randint(1900, 2024)}, about {rng.randint(2, 900)},{_rand(rng, d, 3)} people attended.",
            lambda: f"The color is #{_rand(rng, '0123456789abcdef', 6)}.",
            lambda: f"Room {rng.randint(100, 999)}, floor {rng.randint(1, 30)}, building {rng.randint(1, 9)}.",
            # national IDs one check digit or letter off, or without the cue they need: ten kinds,
            # each as likely as any other kind of hard negative
            *[self._id_near_miss] * 10,
        ]
        return rng.choice(choices)()

    def _identifier(self) -> str:
        words = [self.fake.word() for _ in range(self.rng.randint(4, 7))]
        style = self.rng.random()
        if style < 0.4:
            name = words[0] + "".join(w.capitalize() for w in words[1:])
        elif style < 0.7:
            name = "".join(w.capitalize() for w in words)
        else:
            name = "/".join(words)
        return name + (str(self.rng.randint(0, 999)) if self.rng.random() < 0.6 else "")

    def _isbn(self) -> str:
        body = "978" + _rand(self.rng, string.digits, 9)
        check = (10 - sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(body)) % 10) % 10
        full = body + str(check)
        return f"{full[:3]}-{full[3]}-{full[4:7]}-{full[7:12]}-{full[12]}"

    def _bad_card(self) -> str:
        body = "4" + _rand(self.rng, string.digits, 14)
        wrong = str((int(_luhn_digit(body)) + self.rng.randint(1, 9)) % 10)
        digits = body + wrong
        return " ".join(digits[i:i + 4] for i in range(0, 16, 4))

    def _bad_iban(self) -> str:
        good = self.locales["de_DE"].iban()
        check = int(good[2:4])
        return good[:2] + f"{(check + self.rng.randint(1, 50)) % 97 + 2:02d}"[-2:] + good[4:]

    def filler(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(_FILLER)
        return self.fake.sentence(nb_words=self.rng.randint(6, 14))

    def fill(self, template: str, value: str) -> tuple[str, int]:
        """The template with ``value`` in place of ``{x}``, and the value's offset."""
        makers: dict[str, Callable[[], str]] = {
            "name": self.fake.first_name,
            "company": self.fake.company,
            "word": self.fake.word,
            "exp": lambda: f"{self.rng.randint(1, 12):02d}/{self.rng.randint(25, 31)}",
            "port": lambda: str(self.rng.choice([22, 80, 443, 8080, 5432, 6379])),
        }
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f and f != "x"}
        extras = {f: makers[f]() for f in sorted(fields)}
        before, _, after = template.partition("{x}")
        head = before.format(**extras)
        return head + value + after.format(**extras), len(head)


_MAKERS: dict[str, Callable[[_Gen], str]] = {
    "EMAIL": _Gen.email,
    "PHONE": _Gen.phone,
    "CREDIT_CARD": _Gen.card,
    "IBAN": _Gen.iban,
    "US_SSN": _Gen.ssn,
    "IPV4": _Gen.ipv4,
    "IPV6": _Gen.ipv6,
    "AWS_ACCESS_KEY": _Gen.aws_access_key,
    "AWS_SECRET_KEY": _Gen.aws_secret_key,
    "GITHUB_TOKEN": _Gen.github_token,
    "PRIVATE_KEY": _Gen.private_key,
    "SECRET": _Gen.secret,
    "IN_AADHAAR": _Gen.aadhaar,
    "CA_SIN": _Gen.sin,
    "ES_DNI": _Gen.dni,
    "ES_NIE": _Gen.nie,
    "FR_NIR": _Gen.nir,
    "IT_FISCAL_CODE": _Gen.fiscal_code,
}


def build_corpus(seed: int = 1234, per_type: int = 2000, negatives: int = 4000,
                 fillers: int = 4000, sentences_per_doc: int = 6) -> Corpus:
    """Deterministic corpus: the same arguments give the same documents."""
    gen = _Gen(seed)
    pieces: list[tuple[str, Entity | None]] = []  # sentence, entity offset relative to it
    for label in TYPES:
        templates = _TEMPLATES[label]
        for _ in range(per_type):
            value = _MAKERS[label](gen)
            choices = _CUED_TEMPLATES[label] if label in _CUED_TEMPLATES and value.isdigit() else templates
            sentence, offset = gen.fill(gen.rng.choice(choices), value)
            pieces.append((sentence, Entity(offset, offset + len(value), label)))
    pieces.extend((gen.negative(), None) for _ in range(negatives))
    pieces.extend((gen.filler(), None) for _ in range(fillers))
    gen.rng.shuffle(pieces)
    docs: list[Doc] = []
    for i in range(0, len(pieces), sentences_per_doc):
        text = ""
        entities: list[Entity] = []
        for sentence, entity in pieces[i:i + sentences_per_doc]:
            if text:
                text += "" if text.endswith("\n") else gen.rng.choice([" ", " ", "\n", "\n\n"])
            if entity is not None:
                entities.append(Entity(entity.start + len(text), entity.end + len(text), entity.label))
            text += sentence
        docs.append(Doc(text, tuple(entities)))
    return Corpus(tuple(docs), seed, per_type, negatives)


# -- streaming simulation --------------------------------------------------------------------


@dataclass(slots=True)
class StreamRun:
    """What a simulated pipeline saw of one stream.

    ``findings``: every finding reported (absolute offsets), with the index of the scan that first
    reported it. ``releases``: after each scan, how far the text had been released.
    """

    findings: dict[Finding, int] = field(default_factory=dict)
    releases: list[int] = field(default_factory=list)
    scans: int = 0


def random_cuts(rng: random.Random, length: int, mean_chunk: float = 12.0) -> list[int]:
    """Chunk boundaries as an LLM stream would produce them: mostly short, sometimes long."""
    cuts: list[int] = []
    pos = 0
    while True:
        pos += max(1, int(rng.expovariate(1.0 / mean_chunk)) + 1)
        if pos >= length:
            return cuts
        cuts.append(pos)


def stream(scanners: Sequence[Scanner], text: str, cuts: Sequence[int]) -> StreamRun:
    """Feed ``text`` cut at ``cuts`` through ``scanners`` the way the pipeline does.

    Per chunk: scan (the unreleased text plus ``context_chars`` of released left context), keep the
    findings that start in unreleased text, then release up to the smallest ``stable_until`` but
    never into the middle of a known finding.
    """
    context = max(int(getattr(s, "context_chars", 0)) for s in scanners)
    run = StreamRun()
    released = 0
    ends = sorted({c for c in cuts if 0 < c < len(text)}) + [len(text)]
    for step, end in enumerate(ends):
        final = end == len(text)
        base = max(0, released - context)
        buffer = text[base:end]
        frontier = end
        for scanner in scanners:
            result = scanner.scan(buffer, final)
            frontier = min(frontier, base + result.stable_until)
            for f in result.findings:
                g = f.shifted(base)
                if g.start >= released and g not in run.findings:
                    run.findings[g] = step
        moved = True
        while moved:
            moved = False
            for f in run.findings:
                if f.start < frontier < f.end:
                    frontier = f.start
                    moved = True
        released = max(released, frontier)
        run.releases.append(released)
        run.scans += 1
    return run


def leaks(run: StreamRun, entities: Sequence[Entity]) -> list[Entity]:
    """Entities some character of which was released before a finding covering it was known."""
    out = []
    for e in entities:
        first_release = next((i for i, r in enumerate(run.releases) if r > e.start), None)
        if first_release is None:
            continue
        known = [step for f, step in run.findings.items()
                 if f.label == e.label and f.start < e.end and e.start < f.end]
        if not known or min(known) > first_release:
            out.append(e)
    return out


@dataclass(slots=True)
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        return {"precision": precision, "recall": recall, "tp": self.tp, "fp": self.fp, "fn": self.fn}


def score(predicted: Sequence[tuple[int, int, str]], truth: Sequence[Entity],
          tallies: dict[str, Tally]) -> None:
    """Overlap matching per type: a truth entity is found if a prediction of its type overlaps it;
    a prediction is false if it overlaps no truth entity of its type."""
    for e in truth:
        hit = any(lab == e.label and s < e.end and e.start < t for s, t, lab in predicted)
        tallies.setdefault(e.label, Tally())
        if hit:
            tallies[e.label].tp += 1
        else:
            tallies[e.label].fn += 1
    for s, t, lab in predicted:
        if not any(e.label == lab and s < e.end and e.start < t for e in truth):
            tallies.setdefault(lab, Tally()).fp += 1
