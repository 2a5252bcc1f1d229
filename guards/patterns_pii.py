"""PII regex tables and the checksum validators that confirm their matches.

Speed notes: see `guards.patterns`.
"""

from __future__ import annotations

import re

__all__ = [
    "ALNUM_ID",
    "EMAIL_DOMAIN",
    "EMAIL_LOCAL_REVERSED",
    "IPV6",
    "IPV6_HINT",
    "NUMERIC",
    "PHONE_PUNCT",
    "dni_ok",
    "iban_length",
    "iban_ok",
    "luhn_ok",
    "nino_ok",
    "ssn_ok",
]

NUMERIC = re.compile(
    r"""[0-9](?<![\w.+][0-9])(?:                       # a digit starting a word, then one of:
        (?P<card>[0-9]{3}(?:[ -][0-9]{6}[ -][0-9]{4,5}                       # Amex 4-6-5
            |(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,4}(?:[ -]?[0-9]{1,3})?))      # 13-19 digits
       |(?P<ssn>[0-9]{2}(?P<ss>[- ])[0-9]{2}(?P=ss)[0-9]{4})
       |(?P<sin>[0-9]{2}(?P<cs>[- ])[0-9]{3}(?P=cs)[0-9]{3})
       |(?P<dni>[0-9]{7}-?[A-Z])
       |(?P<ipv4>[0-9]{0,2}(?:\.[0-9]{1,3}){3})                             # octets checked later
       |(?P<phone>(?<=[2-9])[0-9]{2}(?P<ps>[ .-])[0-9]{3}(?P=ps)[0-9]{4}    # 555-123-4567
          |(?<=0)[0-9]{2,4}[ -][0-9]{3,4}[ -]?[0-9]{3,4}))                 # 020 7946 0958
    (?![\w@]|[.,-][0-9])""",
    re.VERBOSE,
)
"""Digit-led identifiers in one pass; the group name says which shape matched. (It starts with
a character class, not a group of alternatives, so `re` skips non-digits in its fast loop.)"""
PHONE_PUNCT = re.compile(
    r"""(?:\((?<![\w(]\()[2-9][0-9]{2}\)[ ]?[0-9]{3}[ .-][0-9]{4}          # (555) 123-4567
      |\+(?<![\w+]\+)[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,6})    # +44 20 7946 0958
    (?![\w@]|[.,-][0-9])""",
    re.VERBOSE,
)
"""Phone numbers that start with `(` or `+`."""

ALNUM_ID = re.compile(
    r"""[A-Z](?<![\w-][A-Z])(?:                       # one shared lead: a capital starting a word
    (?P<iban>[A-Z][0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?)
    |(?P<nino>(?<=[A-CEGHJ-PR-TW-Z])[A-CEGHJ-NPR-TW-Z][ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}
        [ ]?[A-D](?!\w))
    |(?P<nie>(?<=[XYZ])-?[0-9]{7}-?[A-Z](?!\w)))
    """,
    re.VERBOSE,
)
"""Letter-led identifiers: IBAN (trimmed to its country's length later), UK NINO, Spanish NIE."""

EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}(?![\w-])")
"""Domain part of an email, matched from just after the `@`."""
EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9_%+-][A-Za-z0-9._%+-]{0,63}")
"""Local part of an email, matched over the reversed text before the `@` (no leading dot)."""

IPV6_HINT = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
"""Five colons in a row of hex groups: a full IPv6 may be here (times have two)."""
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?![\w:])")
"""IPv6 candidates; `ipaddress` decides (times like 10:30:00 and MACs fail there)."""

# --------------------------------------------------------------------------------------------
# Validators


def luhn_ok(digits: str) -> bool:
    """Whether an ASCII digit string passes the Luhn (mod 10) check of card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Registry lengths per country (SWIFT IBAN registry); an unknown country is not an IBAN.
_IBAN_LENGTHS = {
    country: int(length)
    for country, length in re.findall(
        r"([A-Z]{2})([0-9]{2})",
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
        "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
        "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
        "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
        "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20",
    )
}


def iban_length(country: str) -> int | None:
    """The IBAN length of a country code, or None if it issues no IBANs."""
    return _IBAN_LENGTHS.get(country)


def iban_ok(compact: str) -> bool:
    """Whether an IBAN without spaces has its country's length and passes the mod-97 check."""
    if len(compact) != _IBAN_LENGTHS.get(compact[:2], -1):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


# Numbers printed in ads and documentation, never issued to a person.
_SSN_PUBLIC = frozenset({"078051120", "219099999", "457555462"})


def ssn_ok(digits: str) -> bool:
    """Whether 9 digits can be a US SSN (area not 000/666/9xx, group not 00, serial not 0000)."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (
        area not in ("000", "666")
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
        and digits not in _SSN_PUBLIC
    )


# HMRC never issues these prefixes (and the second letter is never O, checked by the regex).
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def nino_ok(compact: str) -> bool:
    """Whether a UK National Insurance number (no spaces) has an allocatable prefix."""
    return compact[:2] not in _NINO_BAD_PREFIXES


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(compact: str) -> bool:
    """Whether a Spanish DNI (`12345678Z`) or NIE (`X1234567L`) has the right check letter."""
    number = compact[:-1]
    if number[0] in "XYZ":
        number = str("XYZ".index(number[0])) + number[1:]
    return number.isdigit() and _DNI_LETTERS[int(number) % 23] == compact[-1]
