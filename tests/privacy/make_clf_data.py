#!/usr/bin/env python3
"""Synthetic training data for the privacy gate's second-stage classifier (issue #18).

    python tests/privacy/make_clf_data.py --out /tmp/clf_data.jsonl

Needs PyPI `faker` (version pinned below; another version gives other values). Writes JSON lines
{"id", "split", "lang", "group", "text", "sensitive", "categories", "src"}:

* `split` = "train" or "heldout". The held-out split uses its own seed and, for each template table,
  templates the training split never sees (clf_templates.py: i % 5 == 4; templates.py: i % 4 == 3).
* Values come from Faker's locales en_US/en_GB/en_IN/hi_IN/de_DE/es_ES/fr_FR/zh_CN (plus the
  checksum-valid generators of gen_values.py), inserted into hand-written templates: clf_templates.py
  (prose: names with details, health and money in natural words, addresses, credentials, where someone
  is now, obfuscated contact data; and hard negatives) and the old corpus templates (templates.py).
* A case's label comes only from the slots its template uses, never from any detector.
* Router form (router_forms.py): a quarter of the cases of either class are wrapped as the router
  sends them (an [Attachment N] section, a system prompt, a short transcript, a tool result), and
  whole harmless router-form requests are added.
* Hard negatives (hard_negatives.py, round 5): harmless requests with values shaped like personal
  data (a business site's coordinates, company contact blocks, public figures' birth dates, fiction,
  tutorial sample rows, logs, product codes, clinical vignettes, general money questions), each kind
  with personal twins, added after the other tables (which therefore draw the same values as before).
* Augmentations applied to both classes alike (so they carry no label signal): lower case, dropped
  punctuation, typos, chat-style prefixes/suffixes, and burying the request in a longer harmless
  paragraph.

Never uses the frozen evaluation splits (authorS-V, outside the repository).
"""

import argparse
import datetime
import json
import os
import random
import string
import sys

import faker

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_values as gv  # noqa: E402
import make_corpus as mc  # noqa: E402
import router_forms as rf  # noqa: E402
from clf_templates import NEG, SENS  # noqa: E402
from hard_negatives import HARD_NEG, HARD_POS  # noqa: E402
from templates import NEGATIVE as OLD_NEG, SENSITIVE as OLD_SENS  # noqa: E402

FAKER_VERSION = "40.63.0"
SEEDS = {"train": 7001, "heldout": 8002}
LANGS = ["en", "de", "es", "fr", "zh", "hi"]
# Faker locales per language (rotated per case).
LOCALES = {"en": ["en_US", "en_GB", "en_IN"], "de": ["de_DE"], "es": ["es_ES"], "fr": ["fr_FR"],
           "zh": ["zh_CN"], "hi": ["en_IN", "en_IN", "hi_IN"]}
# Cases per (language, group) of clf_templates.py, per split; the old tables get OLD_PER_GROUP.
PER_GROUP = {"train": {"en": 240, "other": 80}, "heldout": {"en": 60, "other": 24}}
OLD_PER_GROUP = {"train": 14, "heldout": 5}
# Router form (router_forms.py): the share of cases of either class wrapped as the router sends them,
# and whole harmless router-form requests per language and split.
ROUTER_SHARE = 0.25
ROUTER_NEG = {"train": {"en": 240, "other": 60}, "heldout": {"en": 60, "other": 20}}

CLF_SLOT_CATEGORY = dict(mc.SLOT_CATEGORY)
CLF_SLOT_CATEGORY.update({
    "first": "person_name", "last": "person_name", "kid": "person_name", "name2": "person_name",
    "user_email": "email", "email_paren": "email", "email_html": "email", "email_pct": "email",
    "email_spaced": "email", "email_homo": "email",
    "phone_mb": "phone", "phone_tabs": "phone", "phone_tabs2": "phone", "phone_sep": "phone",
    "card_mb": "payment_card", "card_odd": "payment_card", "iban_spaced": "iban",
    "wifipw": "credential", "pin": "credential", "pin2": "credential", "otp": "credential", "seed": "credential",
    "codes": "credential", "clabe": "bank_account", "kontonr": "bank_account", "blz": "bank_account",
    "dob2": "date_of_birth", "w3w": "location", "street_num": "postal_address",
    "money": "financial", "money2": "financial", "money3": "financial", "salary2": "financial",
})
# "financial" is not one of the detector's 12 categories: a money disclosure is always paired with a
# name or said in the first person; it is reported as its own group in the figures.
# Category of a sensitive template that has no labelled slot (the disclosure is in its words).
GROUP_CATEGORY = {"health": "health", "financial": "person_name", "credential": "credential",
                  "name_details": "person_name", "location": "location"}
SEED_WORDS = ("orbit flame cousin velvet rigid autumn lens puppy mango harbor silent tribe lemon cactus "
              "drastic ripple shadow uncle absorb fiscal muffin table pocket silver river ozone empty "
              "glove bridge canvas fossil gentle humble island jungle kettle ladder marble noble").split()
W3W = "lanes crisp harvest tables pocket silver filled count soap index home raft slurs bins".split()
SHOPS = ["Apple Store", "Boots", "IKEA", "Decathlon", "Zara", "Walgreens", "Tesco Extra", "Costco"]
HOMO = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
MB_DIGIT = 0x1D7CE  # MATHEMATICAL BOLD DIGIT ZERO
LANDMARKS = ["Eiffel Tower", "Colosseum", "Statue of Liberty", "Sydney Opera House", "Brandenburg Gate", "Taj Mahal",
             "Golden Gate Bridge", "Big Ben", "Sagrada Família", "Machu Picchu", "Acropolis", "Burj Khalifa",
             "Christ the Redeemer", "Tower Bridge", "Louvre", "Forbidden City", "Alhambra", "Neuschwanstein Castle"]
SITES = {"en": ["depot", "warehouse", "distribution centre", "branch", "yard", "plant", "store", "hub", "DC"],
         "de": ["Lager", "Depot", "Werk", "Betriebshof"], "es": ["almacén", "depósito", "centro logístico"],
         "fr": ["entrepôt", "dépôt"], "zh": ["仓库"], "hi": ["godown", "warehouse", "depot"]}
# Cases per (language, group) of hard_negatives.py, per split.
HARD_PER_GROUP = {"train": {"en": 120, "other": 40}, "heldout": {"en": 30, "other": 10}}


class Case(mc.Case):
    def __init__(self, lang, rng, fakers, locale):
        super().__init__(lang if lang != "hi" else "hi", rng, fakers)
        self.fake = fakers[locale]
        self.locale = locale


def money(rng, lang):
    v = rng.choice([rng.randrange(200, 5000), rng.randrange(1000, 60000)])
    return {"en": f"${v:,}" if rng.random() < 0.6 else f"£{v:,}", "de": f"{v:,} €".replace(",", "."),
            "es": f"{v:,} €".replace(",", "."), "fr": f"{v:,} €".replace(",", " "), "zh": f"{v}元",
            "hi": f"₹{v * 10:,}"}[lang]


def mb_digits(s):
    return "".join(chr(MB_DIGIT + int(ch)) if ch.isdigit() else ch for ch in s)


def slot(name, c):
    rng, fake, lang = c.rng, c.fake, c.lang
    f = c.fakers
    if name in ("name", "name2"):
        return fake.name()
    if name in ("first", "kid", "friend", "fname"):
        return fake.first_name()
    if name == "last":
        return fake.last_name()
    if name == "kidage":
        return str(rng.randrange(4, 16))
    if name in ("money", "money2", "money3"):
        return money(rng, lang)
    if name == "salary2":
        return mc.slot_value("salary", c)
    if name == "user_email":
        return fake.free_email()
    if name in ("email_paren", "email_html", "email_pct", "email_spaced", "email_homo"):
        local, domain = fake.free_email().split("@")
        if name == "email_paren":
            return gv.obfuscate_email(f"{local}@{domain}", lang, rng)
        if name == "email_html":
            at = rng.choice(["&#64;", "&#x40;", "&commat;"])
            dot = rng.choice([".", "&#46;"])
            return local + at + domain.replace(".", dot)
        if name == "email_pct":
            return local + "%40" + domain
        if name == "email_spaced":
            return " ".join(local + "@" + domain)
        out = "".join(HOMO[ch] if ch in HOMO and rng.random() < 0.35 else ch for ch in local + "@" + domain)
        return out
    if name in ("phone_mb", "phone_tabs", "phone_tabs2", "phone_sep"):
        num = fake.phone_number().split("x")[0]
        if name == "phone_mb":
            return mb_digits(num)
        digits = "".join(ch for ch in num if ch.isdigit())
        if name in ("phone_tabs", "phone_tabs2"):
            return "\t".join([digits[:4], digits[4:7], digits[7:]])
        sep = rng.choice([" . ", "/", " - ", "·", "_"])
        return sep.join([digits[:3], digits[3:6], digits[6:]])
    if name in ("card_mb", "card_odd"):
        num = f["en_US"].credit_card_number("visa16")
        if name == "card_mb":
            return mb_digits(gv.group4(num))
        return f"{num[:4]}-{num[4:8]} {num[8:12]}-{num[12:]}"
    if name == "iban_spaced":
        return " ".join(f["de_DE"].iban())
    if name == "wifipw":
        return rng.choice([gv.gen_password(rng), fake.word().capitalize() + str(rng.randrange(10, 9999)) + "!",
                           "-".join(fake.word() for _ in range(3))])
    if name in ("pin", "pin2"):
        return f"{rng.randrange(0, 10000):04d}"
    if name == "otp":
        return f"{rng.randrange(0, 1000000):06d}"
    if name == "seed":
        return " ".join(rng.choice(SEED_WORDS) for _ in range(12))
    if name == "codes":
        return ", ".join(f"{rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}" for _ in range(5))
    if name == "clabe":
        return "".join(rng.choice(string.digits) for _ in range(18))
    if name == "kontonr":
        return "00" + "".join(rng.choice(string.digits) for _ in range(8))
    if name == "blz":
        return f"{rng.randrange(100, 899)} {rng.randrange(100, 999)} {rng.randrange(10, 99)}"
    if name == "dob2":
        return mc.slot_value("dob", c)
    if name == "w3w":
        return ".".join(rng.sample(W3W, 3))
    if name in ("street", "street2"):
        return fake.street_name()
    if name in ("street_num", "fnum"):
        return str(rng.randrange(1, 240))
    if name == "company_phone":
        return fake.phone_number()
    if name == "company_email":
        return rng.choice(["info", "support", "contact", "hello", "service", "complaints", "events"]) + "@" + \
            fake.domain_name()
    if name == "company_address":
        return fake.address().replace("\n", ", ")
    if name == "company_domain":
        return fake.domain_name()
    if name == "shop":
        return rng.choice(SHOPS)
    # Harmless slots of hard_negatives.py (no category).
    if name in ("latlon", "latlon2"):
        return f"{rng.uniform(-60, 70):.4f}, {rng.uniform(-170, 170):.4f}"
    if name == "landmark":
        return rng.choice(LANDMARKS)
    if name == "site":
        return rng.choice(SITES[lang])
    if name == "fict_name":
        return fake.name()
    if name == "fict_address":
        return fake.address().replace("\n", ", ")
    if name == "fict_phone":
        return fake.phone_number()
    if name == "sample_name":
        return f["en_US"].name()
    if name == "sample_email":
        return f["en_US"].user_name() + "@" + rng.choice(["example.com", "example.org", "test.local", "mail.test"])
    if name == "sample_phone":
        return f"555-01{rng.randrange(0, 100):02d}"
    if name == "ip":
        return rng.choice([f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                           f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}", f["en_US"].ipv4_public()])
    if name == "ts":
        # Fixed bounds: date_time_this_decade() would depend on today's date.
        return f["en_US"].date_time_between(datetime.datetime(2019, 1, 1), datetime.datetime(2025, 12, 31)).strftime(rng.choice(["%Y-%m-%dT%H:%M:%SZ", "%d/%b/%Y:%H:%M:%S +0000",
                                                                         "%Y-%m-%d %H:%M:%S,%f"]))
    if name in ("sku", "sku2"):
        return rng.choice(string.ascii_uppercase) + rng.choice(string.ascii_uppercase) + "-" + \
            "".join(rng.choice(string.digits) for _ in range(rng.randrange(4, 8)))
    if name == "serial":
        return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(rng.randrange(8, 13)))
    if name == "num":
        return str(rng.randrange(1000, 9999999))
    return mc.slot_value(name, c)


def fill(template, c):
    fields = [fn for _, fn, _, _ in string.Formatter().parse(template) if fn]
    if "pf_dob" in fields:
        c.cache["need_dob"] = True
    values, cats = {}, set()
    for fn in fields:
        if fn not in values:
            values[fn] = slot(fn, c)
        if fn in CLF_SLOT_CATEGORY:
            cats.add(CLF_SLOT_CATEGORY[fn])
    return template.format(**values), cats


FILLER = {
    "en": ["Hope you're well.", "Thanks in advance!", "Quick question.", "It's been a long week.",
           "The weather here has been awful all week and the trains are late again.",
           "I'm trying to get everything sorted before the holidays.", "No rush on this.",
           "Sorry for the long message.", "We're planning a small party next month too."],
    "de": ["Danke im Voraus!", "Kurze Frage.", "Die Woche war lang.", "Kein Stress damit.",
           "Wir planen nächsten Monat auch eine kleine Feier."],
    "es": ["¡Gracias de antemano!", "Pregunta rápida.", "Ha sido una semana larga.", "Sin prisa.",
           "También estamos organizando una fiesta el mes que viene."],
    "fr": ["Merci d'avance !", "Petite question.", "La semaine a été longue.", "Pas d'urgence.",
           "On prépare aussi une petite fête le mois prochain."],
    "zh": ["先谢谢了！", "问个问题。", "这周太累了。", "不着急。", "下个月我们还要办个聚会。"],
    "hi": ["Thanks pehle se!", "Ek chhota sa sawal.", "Bahut lamba hafta tha.", "Koi jaldi nahi hai.",
           "Agle mahine ek party bhi plan kar rahe hain."],
}
PREFIX = ["hey ", "hi, ", "pls ", "ok so ", "quick one: ", "", "", ""]


def typo(text, rng):
    chars = list(text)
    for _ in range(max(1, len(chars) // 60)):
        i = rng.randrange(len(chars) - 1) if len(chars) > 2 else 0
        if chars[i].isalpha() and chars[i + 1].isalpha():
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def augment(text, lang, rng):
    r = rng.random()
    if r < 0.12:
        text = text.lower()
    elif r < 0.18:
        text = text.translate(str.maketrans("", "", ".,!?;:'"))
    if rng.random() < 0.15:
        text = typo(text, rng)
    if rng.random() < 0.15 and lang in ("en", "hi"):
        text = rng.choice(PREFIX) + text
    if rng.random() < 0.18:
        k = rng.randrange(1, 4)
        before = " ".join(rng.sample(FILLER[lang], min(k, len(FILLER[lang]))))
        after = rng.choice(FILLER[lang])
        text = f"{before} {text} {after}" if rng.random() < 0.5 else f"{text} {before}"
    return text


def build(split, seed):
    rng = random.Random(seed)
    locs = sorted({l for ls in LOCALES.values() for l in ls} | set(mc.LOCALE.values()) | set(mc.IBAN_LOCALE.values())
                  | {"en_US", "en_GB", "fr_FR", "it_IT", "zh_CN", "de_DE", "hi_IN"})
    fakers = {}
    for i, loc in enumerate(locs):
        fk = faker.Faker(loc)
        fk.seed_instance(seed * 100 + i)
        fakers[loc] = fk
    cases = []

    def add(lang, group, template, sensitive, src, k):
        locale = LOCALES[lang][k % len(LOCALES[lang])] if src in ("clf", "hard") else mc.LOCALE[lang]
        c = Case(lang, rng, fakers, locale)
        text, cats = fill(template, c)
        cats.discard("financial")
        if sensitive and not cats:
            # A disclosure in words alone ("I'm 11 weeks pregnant"): its group says what it is.
            cats = {GROUP_CATEGORY[group]}
        assert bool(cats) == sensitive, (lang, group, template)
        text = augment(text, lang, rng)
        if rng.random() < ROUTER_SHARE:
            text = rf.wrap(text, lang, rng)
        cases.append({"id": f"{split}-{src}-{lang}-{group}-{k:03d}", "split": split, "lang": lang,
                      "group": group, "text": text, "sensitive": sensitive, "categories": sorted(cats), "src": src})

    for lang in LANGS:
        n = PER_GROUP[split]["en" if lang == "en" else "other"]
        for table, sensitive in ((SENS, True), (NEG, False)):
            for group, templates in table[lang].items():
                allowed = [t for i, t in enumerate(templates) if (i % 5 == 4) == (split == "heldout")]
                if not allowed:
                    continue
                for k in range(n):
                    add(lang, group, allowed[k % len(allowed)], sensitive, "clf", k)
        for table, sensitive in ((OLD_SENS, True), (OLD_NEG, False)):
            for group, templates in table[lang].items():
                allowed = [t for i, t in enumerate(templates) if (i % 4 == 3) == (split == "heldout")]
                if not allowed:
                    continue
                for k in range(OLD_PER_GROUP[split]):
                    add(lang, group, allowed[k % len(allowed)], sensitive, "old", k)
        for k in range(ROUTER_NEG[split]["en" if lang == "en" else "other"]):
            cases.append({"id": f"{split}-router-{lang}-form-{k:03d}", "split": split, "lang": lang, "group": "router_form",
                          "text": rf.harmless_request(lang, rng), "sensitive": False, "categories": [], "src": "router"})
    # Hard negatives and their personal twins (hard_negatives.py), after the other tables so that
    # those draw the same values as before; a group's templates i % 4 == 3 are the held-out split's
    # (a group with fewer than four templates is training-only).
    for lang in LANGS:
        for table, sensitive in ((HARD_POS, True), (HARD_NEG, False)):
            for group, templates in table.get(lang, {}).items():
                allowed = [t for i, t in enumerate(templates)
                           if (len(templates) >= 4 and i % 4 == 3) == (split == "heldout")]
                for k in range(HARD_PER_GROUP[split]["en" if lang == "en" else "other"] if allowed else 0):
                    add(lang, ("hardpos_" if sensitive else "hardneg_") + group, allowed[k % len(allowed)], sensitive, "hard", k)
    rng.shuffle(cases)
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if faker.VERSION != FAKER_VERSION:
        print(f"warning: faker {faker.VERSION} != {FAKER_VERSION}; the data will differ", file=sys.stderr)
    allc = []
    for split, seed in SEEDS.items():
        allc += build(split, seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for case in allc:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    for split in SEEDS:
        cs = [c for c in allc if c["split"] == split]
        pos = sum(c["sensitive"] for c in cs)
        print(f"{split}: {len(cs)} cases, {pos} sensitive, {len(cs) - pos} harmless", file=sys.stderr)


if __name__ == "__main__":
    main()
