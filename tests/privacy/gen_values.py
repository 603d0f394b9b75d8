"""Value generators for the privacy corpus (see make_corpus.py).

Every value is produced here from Faker (PyPI `faker`, seeded) or from the public algorithm of the
identifier it imitates; each identifier with a check digit is validated by an independent check in
this file before it is used. Nothing here knows about, or calls, the Edgewise detector.
"""

import base64
import datetime
import json
import random
import string

# --------------------------------------------------------------------------------------------
# Checksums (public algorithms), used to generate valid identifiers and to assert Faker's ones.
# --------------------------------------------------------------------------------------------

_VD = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
       [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
       [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
       [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_VP = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
       [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
       [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
_VINV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_ok(s):
    c = 0
    for i, ch in enumerate(reversed(s)):
        c = _VD[c][_VP[i % 8][int(ch)]]
    return c == 0


def verhoeff_digit(s):
    c = 0
    for i, ch in enumerate(reversed(s)):
        c = _VD[c][_VP[(i + 1) % 8][int(ch)]]
    return str(_VINV[c])


def luhn_ok(s):
    t = 0
    for i, ch in enumerate(reversed(s)):
        x = int(ch)
        if i % 2:
            x *= 2
            if x > 9:
                x -= 9
        t += x
    return t % 10 == 0


def luhn_complete(prefix, length, rng):
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in string.digits:
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


def mod97_ok(iban):
    s = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def aba_ok(s):
    d = [int(c) for c in s]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(s):
    s = s.upper()
    n = s[:-1].replace("X", "0").replace("Y", "1").replace("Z", "2")
    return DNI_LETTERS[int(n) % 23] == s[-1]


def nir_ok(s):
    body = s[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(s[13:])


def cnid_ok(s):
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(a) * b for a, b in zip(s[:17], w)) % 11] == s[17].upper()


_CF_ODD = dict(zip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21] +
                   [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]))


def cf_ok(s):
    t = 0
    for i, ch in enumerate(s[:15]):
        if i % 2 == 0:
            t += _CF_ODD[ch]
        else:
            t += int(ch) if ch.isdigit() else ord(ch) - 65
    return chr(65 + t % 26) == s[15]


def steuerid_check(first10):
    # ISO 7064 MOD 11,10 as used by the German Steuerliche Identifikationsnummer.
    p = 10
    for ch in first10:
        s = (int(ch) + p) % 10
        if s == 0:
            s = 10
        p = (2 * s) % 11
    c = 11 - p
    return "0" if c == 10 else str(c)


_AUSWEIS_ALPHABET = "CFGHJKLMNPRTVWXYZ0123456789"


def ausweis_check(s):
    # ICAO 9303 check digit (weights 7,3,1; A=10..Z=35), used on German ID cards.
    w = [7, 3, 1]
    t = 0
    for i, ch in enumerate(s):
        v = int(ch) if ch.isdigit() else ord(ch) - 55
        t += v * w[i % 3]
    return str(t % 10)


def nino_ok(s):
    s = s.replace(" ", "")
    bad_first, bad_second = set("DFIQUV"), set("DFIOQUV")
    return (len(s) == 9 and s[0] not in bad_first and s[1] not in bad_second and s[:2] not in
            {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"} and s[2:8].isdigit() and s[8] in "ABCD")


# --------------------------------------------------------------------------------------------
# Identifier generators
# --------------------------------------------------------------------------------------------

def gen_aadhaar(rng):
    body = rng.choice("23456789") + "".join(rng.choice(string.digits) for _ in range(10))
    v = body + verhoeff_digit(body)
    assert verhoeff_ok(v)
    return v


def gen_pan(rng):
    up = string.ascii_uppercase
    return ("".join(rng.choice(up) for _ in range(3)) + rng.choice("PCHFAT") + rng.choice(up) +
            "".join(rng.choice(string.digits) for _ in range(4)) + rng.choice(up))


def gen_dni(rng):
    n = rng.randrange(10_000_000, 99_999_999)
    v = f"{n:08d}{DNI_LETTERS[n % 23]}"
    assert dni_ok(v)
    return v


def gen_nie(rng):
    p = rng.choice("XYZ")
    n = rng.randrange(0, 9_999_999)
    num = int("XYZ".index(p).__str__() + f"{n:07d}")
    v = f"{p}{n:07d}{DNI_LETTERS[num % 23]}"
    assert dni_ok(v)
    return v


def gen_nino(rng):
    first = [c for c in string.ascii_uppercase if c not in "DFIQUV"]
    second = [c for c in string.ascii_uppercase if c not in "DFIOQUV"]
    while True:
        pre = rng.choice(first) + rng.choice(second)
        if pre not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    v = f"{pre} {digits[:2]} {digits[2:4]} {digits[4:]} {rng.choice('ABCD')}"
    assert nino_ok(v)
    return v


def gen_steuerid(rng):
    while True:
        first10 = rng.choice("123456789") + "".join(rng.choice(string.digits) for _ in range(9))
        counts = sorted((first10.count(d) for d in set(first10)), reverse=True)
        if counts[0] in (2, 3) and counts[1] == 1:  # one digit repeated, as the Bundeszentralamt rules ask
            return first10 + steuerid_check(first10)


def gen_ausweis(rng):
    body = rng.choice("CFGHJKLMNPRTVWXYZ") + "".join(rng.choice(_AUSWEIS_ALPHABET) for _ in range(8))
    return body + ausweis_check(body)


def gen_sin(rng):
    return luhn_complete(rng.choice("1234567"), 9, rng)


def gen_us_dl(rng):
    kind = rng.randrange(3)
    if kind == 0:  # California style
        return rng.choice(string.ascii_uppercase) + "".join(rng.choice(string.digits) for _ in range(7))
    if kind == 1:  # Florida style
        d = "".join(rng.choice(string.digits) for _ in range(12))
        return f"{rng.choice(string.ascii_uppercase)}{d[:3]}-{d[3:7]}-{d[7:11]}-{d[11]}"
    return "".join(rng.choice(string.digits) for _ in range(9))  # New York style


def gen_uk_dl(rng, surname):
    sur = (surname.upper().replace(" ", "").replace("-", "") + "99999")[:5]
    sur = "".join(c if c.isalpha() else "9" for c in sur)
    d = "".join(rng.choice(string.digits) for _ in range(6))
    return sur + d + rng.choice(string.ascii_uppercase) + rng.choice(string.ascii_uppercase) + "9" + \
        rng.choice(string.ascii_uppercase) + rng.choice(string.ascii_uppercase)


def gen_de_dl(rng):
    return rng.choice("BFGJ") + "".join(rng.choice(string.digits) for _ in range(3)) + \
        "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(6)) + rng.choice(string.digits)


def gen_in_dl(rng):
    st = rng.choice(["MH", "DL", "KA", "UP", "TN", "GJ", "RJ", "WB"])
    return f"{st}{rng.randrange(1, 60):02d} {rng.randrange(1995, 2024)}{rng.randrange(0, 9_999_999):07d}"


def gen_fr_dl(rng):
    return "".join(rng.choice(string.digits) for _ in range(12))


def gen_cn_unionpay(rng):
    return luhn_complete("62" + rng.choice(["2202", "2848", "1700", "2588"]), 19, rng)


def gen_ifsc(rng):
    return rng.choice(["SBIN", "HDFC", "ICIC", "PUNB", "UTIB", "KKBK"]) + "0" + \
        "".join(rng.choice(string.digits) for _ in range(6))


def gen_sortcode(rng):
    return f"{rng.randrange(10, 99)}-{rng.randrange(0, 99):02d}-{rng.randrange(0, 99):02d}"


def gen_account(rng, lo=8, hi=12):
    n = rng.randrange(lo, hi + 1)
    return rng.choice("123456789") + "".join(rng.choice(string.digits) for _ in range(n - 1))


def gen_isbn13(rng):
    body = "978" + "".join(rng.choice(string.digits) for _ in range(9))
    s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
    chk = (10 - s % 10) % 10
    full = body + str(chk)
    return f"{full[:3]}-{full[3]}-{full[4:7]}-{full[7:12]}-{full[12]}"


def gen_isbn10(rng):
    body = "".join(rng.choice(string.digits) for _ in range(9))
    s = sum(int(c) * (10 - i) for i, c in enumerate(body))
    chk = (11 - s % 11) % 11
    return f"{body[0]}-{body[1:4]}-{body[4:9]}-" + ("X" if chk == 10 else str(chk))


# --------------------------------------------------------------------------------------------
# Secrets (random, shaped like the real formats)
# --------------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits


def _rand(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def gen_aws_key(rng):
    return "AKIA" + _rand(rng, string.ascii_uppercase + "234567", 16)


def gen_aws_secret(rng):
    return _rand(rng, _ALNUM + "/+", 40)


def gen_github(rng):
    return rng.choice(["ghp_", "gho_", "ghs_"]) + _rand(rng, _ALNUM, 36)


def gen_slack(rng):
    return f"xoxb-{rng.randrange(10**10, 10**11)}-{rng.randrange(10**10, 10**11)}-{_rand(rng, _ALNUM, 24)}"


def gen_stripe(rng):
    return "sk_live_" + _rand(rng, _ALNUM, 24)


def gen_google(rng):
    return "AIza" + _rand(rng, _ALNUM + "-_", 35)


def gen_openai(rng):
    return rng.choice(["sk-proj-", "sk-"]) + _rand(rng, _ALNUM, 48)


def gen_hf(rng):
    return "hf_" + _rand(rng, string.ascii_letters, 34)


def _b64url(obj):
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def gen_jwt(rng, fake):
    head = _b64url({"alg": "HS256", "typ": "JWT"})
    body = _b64url({"sub": str(rng.randrange(10**6, 10**7)), "name": fake.name(), "iat": rng.randrange(1.6e9, 1.8e9)})
    sig = base64.urlsafe_b64encode(bytes(rng.randrange(256) for _ in range(32))).decode().rstrip("=")
    return f"{head}.{body}.{sig}"


def gen_pem(rng):
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
    raw = base64.b64encode(bytes(rng.randrange(256) for _ in range(144))).decode()
    lines = [raw[i:i + 64] for i in range(0, len(raw), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def gen_password(rng):
    words = ["Sommer", "Tiger", "Mariposa", "Soleil", "Dragon", "Panda", "Cricket", "Bluebird", "Girasol",
             "Hamster", "Kaffee", "Chocolat", "Mumbai", "Shanghai", "Winter", "Rocket"]
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(words) + str(rng.randrange(1970, 2030)) + rng.choice("!#$%&*?")
    if kind == 1:
        return _rand(rng, _ALNUM, rng.randrange(3, 6)) + rng.choice("@#!") + _rand(rng, _ALNUM, rng.randrange(4, 8))
    return rng.choice(words).lower() + rng.choice(["_", ".", ""]) + str(rng.randrange(10, 9999))


def gen_connstr(rng, fake):
    scheme = rng.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp"])
    user = fake.user_name()
    host = rng.choice(["db.internal", "10.0.3.17", "prod-db.cluster-x1.eu-west-1.rds.amazonaws.com",
                       "cache.corp.lan", "mq.prod.local"])
    port = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "mongodb+srv": None, "redis": 6379, "amqp": 5672}[scheme]
    pw = gen_password(rng).replace("@", "#")
    hp = host if port is None else f"{host}:{port}"
    return f"{scheme}://{user}:{pw}@{hp}/app"


# --------------------------------------------------------------------------------------------
# Formatting helpers and obfuscations
# --------------------------------------------------------------------------------------------

def group4(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def fmt_card(num, rng):
    if len(num) == 15:  # Amex 4-6-5
        return rng.choice([num, f"{num[:4]} {num[4:10]} {num[10:]}"])
    return rng.choice([num, group4(num), "-".join(num[i:i + 4] for i in range(0, len(num), 4))])


DIGIT_WORDS = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
    "fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
    "hi": ["shunya", "ek", "do", "teen", "char", "paanch", "chhah", "saat", "aath", "nau"],
    "zh": ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"],
}


def digits_to_words(value, lang, rng):
    words = DIGIT_WORDS[lang]
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(words[int(ch)])
        elif ch == "+":
            out.append({"en": "plus", "es": "más", "de": "plus", "fr": "plus", "hi": "plus", "zh": "+"}[lang])
    if lang == "zh":
        return "".join(out)
    sep = rng.choice([" ", " ", ", ", "-"])
    return sep.join(out)


def spaced_digits(value):
    return " ".join(c for c in value if c.isdigit())


def fullwidth(value):
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


def devanagari_digits(value):
    return "".join(chr(0x0966 + int(c)) if c.isdigit() else c for c in value)


def zero_width(value, rng):
    out = []
    for i, c in enumerate(value):
        out.append(c)
        if i % 4 == 3 and i + 1 < len(value):
            out.append("\u200b")
    return "".join(out)


def obfuscate_email(email, lang, rng):
    local, domain = email.split("@")
    at = {"en": [" at ", " [at] ", "(at)", " AT "], "es": [" arroba ", " [at] ", "(arroba)"],
          "de": [" (at) ", " at ", " [ät] "], "fr": [" arobase ", " [at] ", " (at) "],
          "zh": [" at ", "(at)", "艾特"], "hi": [" at ", " [at] "]}[lang]
    dot = {"en": [" dot ", " [dot] ", "(dot)", "."], "es": [" punto ", " [dot] ", "."],
           "de": [" punkt ", " (dot) ", "."], "fr": [" point ", " [dot] ", "."],
           "zh": ["点", " dot ", "."], "hi": [" dot ", " [dot] "]}[lang]
    a = rng.choice(at)
    d = rng.choice(dot)
    if d == "." and a.strip() in ("at", "AT"):
        d = " dot "  # keep it clearly obfuscated
    return local.replace(".", d) + a + domain.replace(".", d)


MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"],
}


def fmt_date(d: datetime.date, lang, rng):
    m = d.month
    if lang == "en":
        return rng.choice([f"{MONTHS['en'][m-1]} {d.day}, {d.year}", f"{m:02d}/{d.day:02d}/{d.year}",
                           f"{d.day} {MONTHS['en'][m-1]} {d.year}", d.isoformat()])
    if lang == "es":
        return rng.choice([f"{d.day} de {MONTHS['es'][m-1]} de {d.year}", f"{d.day:02d}/{m:02d}/{d.year}"])
    if lang == "de":
        return rng.choice([f"{d.day}. {MONTHS['de'][m-1]} {d.year}", f"{d.day:02d}.{m:02d}.{d.year}"])
    if lang == "fr":
        return rng.choice([f"{d.day} {MONTHS['fr'][m-1]} {d.year}", f"{d.day:02d}/{m:02d}/{d.year}"])
    if lang == "zh":
        return rng.choice([f"{d.year}年{m}月{d.day}日", f"{d.year}-{m:02d}-{d.day:02d}"])
    return rng.choice([f"{d.day} {MONTHS['en'][m-1]} {d.year}", f"{d.day:02d}-{m:02d}-{d.year}",
                       f"{d.day:02d}/{m:02d}/{d.year}"])


def fmt_gps(rng, fake):
    lat, lon = float(fake.latitude()), float(fake.longitude())
    nd = rng.choice([4, 5, 6])
    return f"{lat:.{nd}f}, {lon:.{nd}f}"


def fmt_dms(rng, fake):
    lat, lon = float(fake.latitude()), float(fake.longitude())

    def dms(v, pos, neg):
        h = pos if v >= 0 else neg
        v = abs(v)
        d = int(v)
        m = int((v - d) * 60)
        s = (v - d - m / 60) * 3600
        return f"{d}°{m:02d}'{s:04.1f}\"{h}"
    return f"{dms(lat, 'N', 'S')} {dms(lon, 'E', 'W')}"


def fmt_maps_url(rng, fake):
    lat, lon = float(fake.latitude()), float(fake.longitude())
    return rng.choice([f"https://maps.google.com/?q={lat:.6f},{lon:.6f}",
                       f"https://www.google.com/maps/@{lat:.7f},{lon:.7f},17z",
                       f"geo:{lat:.5f},{lon:.5f}"])
