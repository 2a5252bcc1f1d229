"""Protected-attribute and proxy patterns (race, religion, age, postcode...), lower-cased text.

Speed notes: see `guards.patterns`.
"""

from __future__ import annotations

import re

from guards.patterns import Severity

__all__ = ["PROTECTED", "PROTECTED_GROUPS"]

# Group name → (severity, detail).

PROTECTED_GROUPS: dict[str, tuple[Severity, str]] = {
    "inference": ("high", "inference of a protected attribute"),
    "race": ("medium", "race/ethnicity"),
    "religion": ("medium", "religion"),
    "sex": ("medium", "sex/gender"),
    "orientation": ("medium", "sexual orientation"),
    "age": ("medium", "age/date of birth"),
    "disability": ("medium", "disability"),
    "pregnancy": ("medium", "pregnancy"),
    "nationality": ("medium", "nationality"),
    "proxy_location": ("low", "proxy: postcode/zip"),
    "proxy_name": ("low", "proxy: name (can be used to infer ethnicity or sex)"),
    "proxy_language": ("low", "proxy: language/accent"),
}
"""What each named alternative of `PROTECTED` stands for."""
_ATTR = r"(?:race|ethnicity|ethnic\s+origin|gender|sex|religion|age|nationality|orientation|origin)"
PROTECTED = re.compile(
    rf"""(?<![a-z0-9])(?:
    (?P<inference>(?:infer|guess|predict|deduce|estimate|determine|deriv)[a-z]*\s+
        (?:[a-z']+\s+){{0,3}}?{_ATTR}\s+(?:from|based\s+on|using|by)\b|based\s+on\s+(?:their|the|his|her|an?)
        \s+(?:[a-z']+\s+)?(?:first\s+name|surname|name|accent|postcode|zip\s*code|zip))
    |(?P<race>rac(?:e|ial|ially)(?!\s+condition)|ethnic(?:ity|ities)?|skin\s+colou?r|caucasian
        |african[- ]american|hispanic|latin[oax]|latinx|asian|indigenous|aboriginal)
    |(?P<religion>religio(?:n|ns|us)|(?<!good\s)(?<!bad\s)faith|muslim|christian|jewish|hindu
        |buddhist|sikh|atheist|catholic|protestant|islam(?:ic)?|mosque|synagogue)
    |(?P<sex>sex|gender(?:ed)?|male|female|transgender|non-binary|nonbinary)
    |(?P<orientation>sexual\s+orientation|gay|lesbian|bisexual|heterosexual|homosexual|lgbtq?i?a?
        |queer)
    |(?P<age>age|aged\s+[0-9]{{1,3}}|[0-9]{{1,3}}[ -]years?[ -]old|date[ _-]?of[ _-]?birth|dob
        |birth[ _-]?date|birthday|born\s+(?:in|on)\s+[0-9])
    |(?P<disability>disabilit(?:y|ies)|disabled|handicap(?:ped)?|wheelchair|impair(?:ment|ed)
        |blind|deaf|autis(?:m|tic)|adhd|dyslexi[ac]|mental\s+(?:illness|health\s+condition))
    |(?P<pregnancy>pregnan(?:t|cy|cies)|maternity|expecting\s+a\s+baby|prenatal)
    |(?P<nationality>nationality|citizenship|national\s+origin|immigra(?:nt|tion\s+status)
        |country\s+of\s+(?:birth|origin)|foreign[- ]born)
    |(?P<proxy_location>post(?:al)?[ _-]?code|zip(?:[ _-]?code)?(?!\s+(?:file|archive)))
    |(?P<proxy_name>(?:first|given|fore|maiden|birth)[ _-]?name|surname\s+origin)
    |(?P<proxy_language>native\s+language|mother\s+tongue|first\s+language|accent)
    )(?![a-z0-9])""",
    re.VERBOSE,
)
"""Protected attributes and their proxies, by keyword and phrase (over lower-cased text)."""
