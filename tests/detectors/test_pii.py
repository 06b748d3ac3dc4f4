"""The PII layer: each recogniser's positives and hard negatives, hold-back, redaction, and the
streaming contract on generated text."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.detectors.base import Scanner
from guard.detectors.pii import (
    ENTITIES,
    PiiScanner,
    card_issuer_ok,
    iban_ok,
    looks_random,
    luhn_ok,
)
from guard.detectors.redact import merge_spans, redact
from guard.errors import ConfigError
from guard.types import PII, Finding

from ._contract import check_contract


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner()


def found(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(f.label, text[f.start:f.end]) for f in scanner.scan(text, True).findings]


POSITIVES = [
    ("Reach John at john.doe+work@example.co.uk.", "EMAIL", "john.doe+work@example.co.uk"),
    ("Mail <a_b@sub.uni-berlin.de>", "EMAIL", "a_b@sub.uni-berlin.de"),
    ("Call (415) 555-2671 today", "PHONE", "(415) 555-2671"),
    ("Call +1-415-555-2671.", "PHONE", "+1-415-555-2671"),
    ("UK: +44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
    ("London 020 7946 0958 office", "PHONE", "020 7946 0958"),
    ("Berlin +49 30 901820", "PHONE", "+49 30 901820"),
    ("Paris 01 23 45 67 89", "PHONE", "01 23 45 67 89"),
    ("India +91 98765 43210", "PHONE", "+91 98765 43210"),
    ("E.164 +14155552671 works", "PHONE", "+14155552671"),
    ("Card 4111 1111 1111 1111, thanks", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("Card 4111-1111-1111-1111", "CREDIT_CARD", "4111-1111-1111-1111"),
    ("Card 4111111111111111", "CREDIT_CARD", "4111111111111111"),
    ("Amex 3782 822463 10005", "CREDIT_CARD", "3782 822463 10005"),
    ("MC 5555555555554444.", "CREDIT_CARD", "5555555555554444"),
    ("IBAN DE89 3704 0044 0532 0130 00, ok", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432"),
    ("IBAN FR1420041010050500013M02606", "IBAN", "FR1420041010050500013M02606"),
    ("SSN 536-22-8726.", "US_SSN", "536-22-8726"),
    ("SSN 536 22 8726", "US_SSN", "536 22 8726"),
    ("Host 192.168.1.10:8080", "IPV4", "192.168.1.10"),
    ("ssh admin@10.0.0.1", "IPV4", "10.0.0.1"),
    ("net 10.20.0.0/16 routes", "IPV4", "10.20.0.0"),
    ("End of sentence 8.8.8.8.", "IPV4", "8.8.8.8"),
    ("v6 2001:db8::1 here", "IPV6", "2001:db8::1"),
    ("link fe80::1%eth0 up", "IPV6", "fe80::1%eth0"),
    ("[2001:db8:85a3::8a2e:370:7334]:443", "IPV6", "2001:db8:85a3::8a2e:370:7334"),
    ("mapped ::ffff:192.0.2.128.", "IPV6", "::ffff:192.0.2.128"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", "AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_KEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok", "GITHUB_TOKEN",
     "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("key sk-proj-4f9aB2cD8eF1gH7iJ3kL5mN0oP6qR", "SECRET", "sk-proj-4f9aB2cD8eF1gH7iJ3kL5mN0oP6qR"),
    ("key = Zx8Qm2LpR7vT4nW9kY3bH6cJ1fG5dS0aEu", "SECRET", "Zx8Qm2LpR7vT4nW9kY3bH6cJ1fG5dS0aEu"),
]

NEGATIVES = [
    "Your order #123456789012 has shipped.",
    "Order number: 112-4567890-1234567.",
    "See ISBN 978-0-306-40615-7 for details.",
    "The meeting is on 2023-10-05 at 14:30:00.",
    "Deadline 05/10/2023, or 10.05.2023 in Germany.",
    "Logged at 2023-10-05T14:30:00Z.",
    "Upgrade to v1.2.3.4 or 1.2.3.4.5 first.",
    "Python 3.11.4 is required.",
    "The number 4111 1111 1111 1112 fails Luhn.",
    "Luhn-valid but no issuer: 1234 5678 9012 3452.",
    "Request 550e8400-e29b-41d4-a716-446655440000 failed.",
    "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it.",
    "Digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.",
    "It costs $1,299.99 or €49.90, i.e. 1299.00 USD.",
    "Opens at 9:45 and uptime is 12:30:45.",
    "MAC 00:1A:2B:3C:4D:5E is the router.",
    "Invalid SSNs: 000-12-3456, 666-12-3456, 912-34-5678, 536-00-8726.",
    "Typo IBAN DE88 3704 0044 0532 0130 00.",
    "Pi is 3.14159265 and e is 2.71828.",
    "Call getUserProfileByIdentifier() or AbstractSingletonProxyFactoryBean.",
    "Path /usr/local/lib/python3.11/site-packages/numpy/core/include.",
    "See https://github.com/someone/some-repo/blob/main/src/index.ts today.",
    "std::vector<int> and Foo::Bar::baz are C++.",
    "Over 1,000,000 users in 1990.",
    "Zip 94103, room 1203.",
    "Hex colour #ff00ff.",
]


class TestRecognisers:
    @pytest.mark.parametrize(("text", "label", "value"), POSITIVES)
    def test_positive(self, scanner: PiiScanner, text: str, label: str, value: str) -> None:
        assert found(scanner, text) == [(label, value)]

    @pytest.mark.parametrize("text", NEGATIVES)
    def test_hard_negative(self, scanner: PiiScanner, text: str) -> None:
        assert found(scanner, text) == []

    def test_private_key_block(self, scanner: PiiScanner) -> None:
        key = (
            "-----BEGIN RSA PRIVATE KEY-----\n"
            "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
            "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
            "-----END RSA PRIVATE KEY-----"
        )
        text = f"Here you go:\n{key}\nDone."
        assert found(scanner, text) == [("PRIVATE_KEY", key)]

    def test_unterminated_private_key_is_held_then_redacted_at_the_end(self, scanner: PiiScanner) -> None:
        text = "Key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nand more words "
        held = scanner.scan(text, False)
        assert held.stable_until == 5 and held.findings == ()
        final = scanner.scan(text, True)
        assert [(f.label, f.start, f.end) for f in final.findings] == [("PRIVATE_KEY", 5, len(text))]

    def test_open_private_key_reports_its_begin_line_as_opened(self, scanner: PiiScanner) -> None:
        begin = "-----BEGIN RSA PRIVATE KEY-----"
        text = f"Key:\n{begin}\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nand more"
        opened = scanner.scan(text, False).opened
        assert opened is not None and (opened.label, text[opened.start:opened.end]) == (
            "PRIVATE_KEY", begin)
        assert scanner.scan(text, True).opened is None
        assert scanner.scan(text + "\n-----END RSA PRIVATE KEY-----\n", False).opened is None
        assert scanner.scan("no key here -----BEGIN", False).opened is None
        assert PiiScanner(entities=["EMAIL"]).scan(text, False).opened is None

    def test_opener_in_front_of_later_text_of_the_block_reads_it_open(self, scanner: PiiScanner) -> None:
        # what the pipeline scans once the BEGIN line has left its context
        begin = "-----BEGIN PRIVATE KEY-----"
        middle = "gkqhkiG9w0BAQEFAASC\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
        held = scanner.scan(begin + middle, False)
        assert held.opened is not None and held.opened.start == 0 and held.stable_until == 0
        assert held.findings == ()
        end = "\n-----END PRIVATE KEY-----"
        closed = scanner.scan(begin + middle + end + "\nDone.", False)
        assert [(f.label, f.start, f.end) for f in closed.findings] == [
            ("PRIVATE_KEY", 0, len(begin + middle + end))]

    def test_closed_private_key_is_reported_while_text_after_it_is_held(
            self, scanner: PiiScanner) -> None:
        # "KEY-----" may still grow into a longer token: the text after the END line is held, but
        # the block is complete and reported at once
        text = "Key:\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIGlRHGKhZ7pLT3iK2nDq1sXQ==\n" \
               "-----END EC PRIVATE KEY-----"
        result = scanner.scan(text, False)
        assert [(f.label, f.start, f.end) for f in result.findings] == [("PRIVATE_KEY", 5, len(text))]
        assert 5 < result.stable_until < len(text) and result.opened is None

    def test_ssn_shape_that_fails_validation_is_not_a_phone(self, scanner: PiiScanner) -> None:
        assert found(scanner, "SSN 666-12-3456") == []

    def test_findings_are_pii(self, scanner: PiiScanner) -> None:
        (f,) = scanner.scan("mail a@b.io", True).findings
        assert (f.category, f.detector, f.score) == (PII, "pii", 1.0)

    def test_entity_selection(self) -> None:
        only_email = PiiScanner(entities=["EMAIL"])
        assert found(only_email, "a@b.io 4111 1111 1111 1111") == [("EMAIL", "a@b.io")]
        with pytest.raises(ConfigError):
            PiiScanner(entities=["PASSPORT"])
        with pytest.raises(ConfigError):
            PiiScanner(regions=["XX"])

    def test_regions(self) -> None:
        us_only = PiiScanner(regions=["US"])
        assert found(us_only, "Paris 01 23 45 67 89") == []
        assert found(us_only, "Paris +33 1 23 45 67 89") == [("PHONE", "+33 1 23 45 67 89")]

    def test_is_a_scanner(self, scanner: PiiScanner) -> None:
        assert isinstance(scanner, Scanner)
        assert set(ENTITIES) == {
            "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6", "AWS_ACCESS_KEY",
            "AWS_SECRET_KEY", "GITHUB_TOKEN", "PRIVATE_KEY", "SECRET",
        }


class TestValidators:
    def test_luhn(self) -> None:
        assert luhn_ok("4111111111111111")
        assert not luhn_ok("4111111111111112")

    def test_issuer(self) -> None:
        assert card_issuer_ok("4111111111111111")
        assert card_issuer_ok("378282246310005")
        assert not card_issuer_ok("37828224631000")  # Amex is 15 digits
        assert not card_issuer_ok("1234567890123452")

    def test_iban(self) -> None:
        assert iban_ok("DE89370400440532013000")
        assert not iban_ok("DE88370400440532013000")
        assert not iban_ok("DE8937040044053201300")  # wrong length for DE

    @pytest.mark.parametrize(
        ("token", "random_"),
        [
            ("Zx8Qm2LpR7vT4nW9kY3bH6cJ1fG5dS0aEu", True),
            ("3f786850e387550fdab836ed7e6dc881de23001b", False),  # hex
            ("handleIncomingWebhookEventPayload2", False),  # identifier
            ("this_is_a_very_long_snake_case_name_2", False),
            ("ThoughIncreaseHospitalMightSignificantAll551", False),
            ("missionSortListenMarriageReachHundred24", False),
            ("much/space/structure/use/Democrat/forget/fire/room28", False),
            ("slONX242kLEvC7MRAxA2Lj17fnJgaBTA", True),  # English-looking pairs, but random
            ("XST1V/Dfv+g7cOz1O5/9ndM2rTI4oUHJ", True),
        ],
    )
    def test_looks_random(self, token: str, random_: bool) -> None:
        assert looks_random(token) is random_


class TestStableUntil:
    @pytest.mark.parametrize(
        ("text", "stable"),
        [
            ("Hello world ", 12),
            ("Hello wor", 6),  # any word may still become an email's local part
            ("Call 415 555", 5),
            ("Call 415 555-2671 now ", 22),
            ("Call 415 555-2671. ", 5),  # ". 5..." could still continue the number
            ("Host 10.0.0.1", 5),
            ("Host 10.0.0.1.", 5),  # maybe 10.0.0.1.5, a version
            ("IBAN DE89 3704 ", 5),
            ("Mail a@b.com.", 5),  # maybe a@b.com.au
            ("-----BEGIN RSA PRI", 0),
            ("I was born in 1990.   ", 22),
        ],
    )
    def test_holds_only_what_may_grow(self, scanner: PiiScanner, text: str, stable: int) -> None:
        assert scanner.scan(text, False).stable_until == stable

    def test_entity_touching_the_end_is_not_final(self, scanner: PiiScanner) -> None:
        held = scanner.scan("Card 4111 1111 1111 1111", False)
        assert held.findings == () and held.stable_until == 5
        done = scanner.scan("Card 4111 1111 1111 1111, thanks", False)
        assert [f.label for f in done.findings] == ["CREDIT_CARD"]


class TestRedact:
    def test_placeholders(self, scanner: PiiScanner) -> None:
        text = "Reach John at john@example.com or (415) 555-2671; card 4111 1111 1111 1111."
        assert redact(text, scanner.scan(text, True).findings) == (
            "Reach John at [EMAIL] or [PHONE]; card [CREDIT_CARD]."
        )

    def test_overlaps_merge_longest_wins(self) -> None:
        a = Finding(5, 20, PII, "SECRET", 0.7, "pii")
        b = Finding(10, 40, PII, "GITHUB_TOKEN", 1.0, "pii")
        c = Finding(50, 55, PII, "EMAIL", 1.0, "pii")
        assert merge_spans([c, a, b]) == [(5, 40, "GITHUB_TOKEN"), (50, 55, "EMAIL")]
        text = "x" * 60
        assert redact(text, [a, b, c]) == "x" * 5 + "[GITHUB_TOKEN]" + "x" * 10 + "[EMAIL]" + "x" * 5

    def test_ignores_non_pii_findings(self) -> None:
        assert redact("you bitch", [Finding(4, 9, "profanity", "profanity:bitch", 1.0, "lexical")]) == (
            "you bitch"
        )

    def test_rejects_spans_outside_text(self) -> None:
        with pytest.raises(ValueError):
            redact("short", [Finding(2, 10, PII, "EMAIL", 1.0, "pii")])


# -- the streaming contract, on generated text ---------------------------------------------

ENTITY_SAMPLES = [value for _, _, value in POSITIVES] + [
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIGlRHGKhZ7pLT3iK2nDq1sXQ==\n-----END EC PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC",  # unterminated
]
NEGATIVE_SAMPLES = [
    "order #123456789012", "978-0-306-40615-7", "2023-10-05", "14:30:00", "v1.2.3.4",
    "1.2.3.4.5", "4111 1111 1111 1112", "550e8400-e29b-41d4-a716-446655440000", "$1,299.99",
    "00:1A:2B:3C:4D:5E", "3f786850e387550fdab836ed7e6dc881de23001b", "666-12-3456",
]
# Runs longer than any entity: the scanner must neither hold them forever nor, when a later scan
# starts inside one, see an entity in the part it still has.
LONG_RUNS = ("Zx8Qm2LpR7vT4nW9" * 14, "1 2 " * 30, "a" * 230 + "@example.com", "12.34." * 20,
             "AKIAIOSFODNN7EXAMPLE" * 12, "DE89" * 15, "ab:cd:" * 16)
PROSE = ("Sure!", "You can reach", "John", "at", "or call", "the", "card", "is", "IBAN", "SSN",
         "aws secret", "token", "host", "1990", "3", "and", "(", ")", "+", "-----", "::", "ok.")
SEPARATORS = (" ", " ", "", ". ", ", ", "\n", ":", "-", "(", ")", "+", "/", "=", "\"", "  ")
ALPHABET = "0123456789 .-+()/:@abcDEFxyzAKI_=\n٣４"


@st.composite
def pii_texts(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))

    def cut_entity() -> str:  # an entity broken off early or late, the typical streaming edge
        value = rng.choice(ENTITY_SAMPLES)
        return value[: rng.randint(1, len(value))]

    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(ENTITY_SAMPLES),
                st.sampled_from(NEGATIVE_SAMPLES),
                st.sampled_from(PROSE),
                st.sampled_from(LONG_RUNS),
                st.builds(cut_entity),
                st.text(alphabet=ALPHABET, max_size=8),
            ),
            max_size=14,
        )
    )
    seps = [draw(st.sampled_from(SEPARATORS)) for _ in parts]
    return "".join(p + s for p, s in zip(parts, seps))


class TestStreamingContract:
    @settings(max_examples=300, deadline=None)
    @given(pii_texts(), st.integers(0, 600), st.integers(0, 600))
    def test_contract(self, scanner: PiiScanner, text: str, k: int, k2: int) -> None:
        check_contract(scanner, text, k, k2)

    @settings(max_examples=100, deadline=None)
    @given(pii_texts(), st.integers(0, 600))
    def test_long_left_context(self, scanner: PiiScanner, text: str, k: int) -> None:
        padding = "Earlier released prose, with 12 numbers and words, out of context now. " * 6
        check_contract(scanner, padding + text, len(padding) + k, len(padding) + 2 * k)

    @settings(max_examples=100, deadline=None)
    @given(pii_texts())
    def test_hold_back_is_bounded_outside_private_keys(self, scanner: PiiScanner, text: str) -> None:
        if "-----" in text:
            return
        result = scanner.scan(text, False)
        assert len(text) - result.stable_until <= scanner.context_chars
