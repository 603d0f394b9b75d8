#!/usr/bin/env python3
"""Generate tests/privacy/corpus.jsonl, the labelled corpus for the on-device sensitivity detector.

Run with the reference venv (needs PyPI `faker`, pinned below):

    /opt/refenv/bin/python tests/privacy/make_corpus.py          # writes tests/privacy/corpus.jsonl

Each line is {"id", "split", "lang", "group", "text", "sensitive", "categories"}. Three splits are
made from different seeds: `dev` (tuned on) and `test` and `test2` (held out: evaluate only, never
tune on them). The held-out splits also use templates that `dev` never sees (see templates.py). Labels come only from what the generator
inserted (SLOT_CATEGORY), never from the detector under test. Languages: en, es, de, fr, zh and hi
(Hindi written in Latin script, "Hinglish").
"""

import argparse
import datetime
import json
import os
import random
import string
import sys

import faker

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_values as gv  # noqa: E402
from templates import NEGATIVE, SENSITIVE  # noqa: E402

FAKER_VERSION = "40.54.0"
# `dev`: tuned on. `test`: held out, evaluated once (its result is reported as measured).
# `test2`: a second held-out split added after the one fix that `test` prompted, evaluated once after
# that fix, so a clean held-out number exists for the final detector.
SPLITS = {"dev": 1001, "test": 2002, "test2": 3003}
LANGS = ["en", "es", "de", "fr", "zh", "hi"]
LOCALE = {"en": "en_US", "es": "es_ES", "de": "de_DE", "fr": "fr_FR", "zh": "zh_CN", "hi": "en_IN"}
IBAN_LOCALE = {"en": "en_GB", "es": "es_ES", "de": "de_DE", "fr": "fr_FR", "zh": "de_DE", "hi": "nl_NL"}

# Cases per language and group, per split.
SENSITIVE_COUNTS = {"email": 5, "phone": 5, "address": 5, "gov_id": 8, "card": 5, "iban": 4, "bank": 4,
                    "dob": 5, "health": 8, "credential": 7, "location": 4, "person": 4, "obfuscated": 7}
NEGATIVE_COUNTS = {"medical_generic": 7, "legal": 4, "public_figure": 6, "lookalike_ids": 6, "versions": 4,
                   "math": 6, "test_cards": 6, "code": 7, "chitchat": 5, "dates_places": 5,
                   "password_help": 4, "numbers": 3}

# What each slot inserts. Slots not listed insert nothing personal (look-alikes, public facts).
SLOT_CATEGORY = {
    "name": "person_name", "email": "email", "email_obf": "email",
    "phone": "phone", "phone_words": "phone", "phone_fw": "phone", "phone_deva": "phone",
    "address": "postal_address",
    "ssn": "government_id", "ssn_spaced": "government_id", "nino": "government_id", "dni": "government_id",
    "nie": "government_id", "nir": "government_id", "cf": "government_id", "aadhaar": "government_id",
    "aadhaar_spaced": "government_id", "pan": "government_id", "cnid": "government_id",
    "cnid_fw": "government_id", "steuerid": "government_id", "ausweis": "government_id",
    "passport": "government_id", "dl_us": "government_id", "dl_uk": "government_id", "dl_de": "government_id",
    "dl_fr": "government_id", "dl_in": "government_id",
    "card": "payment_card", "card_spaced": "payment_card", "card_zw": "payment_card", "unionpay": "payment_card",
    "iban": "iban", "aba": "bank_account", "acct": "bank_account", "sortcode": "bank_account",
    "dob": "date_of_birth", "cond": "health", "drug": "health",
    "aws": "credential", "aws_secret": "credential", "github": "credential", "slack": "credential",
    "stripe": "credential", "google": "credential", "openai": "credential", "hf": "credential",
    "jwt": "credential", "pem": "credential", "connstr": "credential", "pw": "credential",
    "gps": "location", "dms": "location", "maps": "location",
}

CONDITIONS = {
    "en": ["type 2 diabetes", "HIV", "major depression", "breast cancer", "bipolar disorder", "epilepsy",
           "high blood pressure", "generalized anxiety disorder", "Crohn's disease", "hepatitis C",
           "multiple sclerosis", "early-onset Alzheimer's", "PTSD", "prostate cancer", "schizophrenia",
           "rheumatoid arthritis", "COVID-19", "chlamydia"],
    "es": ["diabetes tipo 2", "VIH", "depresión", "cáncer de mama", "trastorno bipolar", "epilepsia",
           "hipertensión", "ansiedad", "la enfermedad de Crohn", "hepatitis C", "esclerosis múltiple",
           "alzhéimer", "cáncer de próstata", "esquizofrenia", "artritis reumatoide", "COVID-19"],
    "de": ["Diabetes Typ 2", "HIV", "Depressionen", "Brustkrebs", "eine bipolare Störung", "Epilepsie",
           "Bluthochdruck", "eine Angststörung", "Morbus Crohn", "Hepatitis C", "Multiple Sklerose",
           "Alzheimer", "Prostatakrebs", "Schizophrenie", "Rheuma", "COVID-19"],
    "fr": ["un diabète de type 2", "le VIH", "une dépression", "un cancer du sein", "un trouble bipolaire",
           "de l'épilepsie", "de l'hypertension", "un trouble anxieux", "la maladie de Crohn", "l'hépatite C",
           "une sclérose en plaques", "la maladie d'Alzheimer", "un cancer de la prostate",
           "une schizophrénie", "la COVID-19"],
    "zh": ["2型糖尿病", "艾滋病", "抑郁症", "乳腺癌", "双相情感障碍", "癫痫", "高血压", "焦虑症", "克罗恩病",
           "丙肝", "多发性硬化", "阿尔茨海默病", "前列腺癌", "精神分裂症", "新冠"],
    "hi": ["sugar (diabetes)", "HIV", "depression", "breast cancer", "BP ki problem", "epilepsy", "TB",
           "anxiety", "thyroid", "kidney stone", "cancer", "asthma", "PCOD", "jaundice"],
}
DRUGS = {
    "en": ["metformin", "sertraline", "lithium", "insulin", "methotrexate", "levothyroxine", "fluoxetine",
           "PrEP", "prednisone", "olanzapine"],
    "es": ["metformina", "sertralina", "litio", "insulina", "metotrexato", "levotiroxina", "fluoxetina",
           "prednisona", "olanzapina"],
    "de": ["Metformin", "Sertralin", "Lithium", "Insulin", "Methotrexat", "L-Thyroxin", "Fluoxetin",
           "Prednisolon", "Olanzapin"],
    "fr": ["metformine", "sertraline", "lithium", "méthotrexate", "lévothyroxine", "fluoxétine",
           "prednisone", "olanzapine"],
    "zh": ["二甲双胍", "舍曲林", "胰岛素", "甲氨蝶呤", "左甲状腺素", "氟西汀", "泼尼松", "奥氮平"],
    "hi": ["metformin", "sertraline", "insulin", "thyronorm", "fluoxetine", "prednisolone", "olanzapine"],
}
# Diseases and drugs named in generic questions (hard negatives: nobody's health is disclosed).
DISEASES = {
    "en": ["diabetes", "measles", "Lyme disease", "shingles", "asthma", "migraine", "anemia", "glaucoma",
           "tuberculosis", "malaria", "celiac disease", "gout"],
    "es": ["diabetes", "sarampión", "gripe", "asma", "migraña", "anemia", "tuberculosis", "malaria",
           "celiaquía", "gota"],
    "de": ["Diabetes", "Masern", "Borreliose", "Gürtelrose", "Asthma", "Migräne", "Anämie", "Tuberkulose",
           "Malaria", "Zöliakie", "Gicht"],
    "fr": ["le diabète", "la rougeole", "la grippe", "l'asthme", "la migraine", "l'anémie", "la tuberculose",
           "le paludisme", "la maladie cœliaque", "la goutte"],
    "zh": ["糖尿病", "麻疹", "流感", "哮喘", "偏头痛", "贫血", "肺结核", "疟疾", "痛风", "带状疱疹"],
    "hi": ["diabetes", "dengue", "malaria", "typhoid", "asthma", "migraine", "anemia", "TB", "chikungunya",
           "gout"],
}
OTC = {"en": ["ibuprofen", "paracetamol", "aspirin", "loratadine"],
       "es": ["ibuprofeno", "paracetamol", "aspirina"], "de": ["Ibuprofen", "Paracetamol", "Aspirin"],
       "fr": ["l'ibuprofène", "paracétamol", "l'aspirine"], "zh": ["布洛芬", "对乙酰氨基酚", "阿司匹林"],
       "hi": ["paracetamol", "ibuprofen", "crocin", "aspirin"]}
DRUG_GENERIC = {"en": ["metformin", "ibuprofen", "penicillin", "statins", "melatonin"],
                "es": ["la metformina", "el ibuprofeno", "la penicilina", "las estatinas"],
                "de": ["Metformin", "Ibuprofen", "Penicillin", "Statine"],
                "fr": ["la metformine", "l'ibuprofène", "la pénicilline", "les statines"],
                "zh": ["二甲双胍", "布洛芬", "青霉素", "他汀类药物"],
                "hi": ["metformin", "ibuprofen", "penicillin", "statins"]}

D = datetime.date
PUBLIC_FIGURES = {
    "en": [("Barack Obama", D(1961, 8, 4)), ("Abraham Lincoln", D(1809, 2, 12)), ("Taylor Swift", D(1989, 12, 13)),
           ("Albert Einstein", D(1879, 3, 14)), ("Nelson Mandela", D(1918, 7, 18)),
           ("Winston Churchill", D(1874, 11, 30)), ("Steve Jobs", D(1955, 2, 24)), ("Marie Curie", D(1867, 11, 7)),
           ("Martin Luther King Jr.", D(1929, 1, 15)), ("Serena Williams", D(1981, 9, 26))],
    "es": [("Gabriel García Márquez", D(1927, 3, 6)), ("Frida Kahlo", D(1907, 7, 6)), ("Rafael Nadal", D(1986, 6, 3)),
           ("Pablo Picasso", D(1881, 10, 25)), ("Lionel Messi", D(1987, 6, 24)), ("Penélope Cruz", D(1974, 4, 28)),
           ("Salvador Dalí", D(1904, 5, 11)), ("Shakira", D(1977, 2, 2))],
    "de": [("Angela Merkel", D(1954, 7, 17)), ("Johann Wolfgang von Goethe", D(1749, 8, 28)),
           ("Albert Einstein", D(1879, 3, 14)), ("Konrad Adenauer", D(1876, 1, 5)),
           ("Michael Schumacher", D(1969, 1, 3)), ("Karl Marx", D(1818, 5, 5)), ("Helmut Kohl", D(1930, 4, 3)),
           ("Franz Beckenbauer", D(1945, 9, 11))],
    "fr": [("Victor Hugo", D(1802, 2, 26)), ("Napoléon Bonaparte", D(1769, 8, 15)),
           ("Charles de Gaulle", D(1890, 11, 22)), ("Zinedine Zidane", D(1972, 6, 23)),
           ("Emmanuel Macron", D(1977, 12, 21)), ("Édith Piaf", D(1915, 12, 19)), ("Marie Curie", D(1867, 11, 7)),
           ("Simone de Beauvoir", D(1908, 1, 9))],
    "zh": [("鲁迅", D(1881, 9, 25)), ("毛泽东", D(1893, 12, 26)), ("孙中山", D(1866, 11, 12)), ("姚明", D(1980, 9, 12)),
           ("邓小平", D(1904, 8, 22)), ("屠呦呦", D(1930, 12, 30)), ("周杰伦", D(1979, 1, 18)), ("李白", None)],
    "hi": [("Narendra Modi", D(1950, 9, 17)), ("Mahatma Gandhi", D(1869, 10, 2)),
           ("Sachin Tendulkar", D(1973, 4, 24)), ("Shah Rukh Khan", D(1965, 11, 2)),
           ("Amitabh Bachchan", D(1942, 10, 11)), ("Jawaharlal Nehru", D(1889, 11, 14)),
           ("Virat Kohli", D(1988, 11, 5)), ("Lata Mangeshkar", D(1929, 9, 28))],
}
CITIES_WORLD = {"en": ["Kyoto", "Lisbon", "Cape Town", "Vancouver", "Marrakesh"],
                "es": ["Kioto", "Lisboa", "Ciudad de México", "Cusco"], "de": ["Kyoto", "Lissabon", "Wien", "Prag"],
                "fr": ["Kyoto", "Lisbonne", "Montréal", "Marrakech"], "zh": ["京都", "巴黎", "桂林", "大理"],
                "hi": ["Goa", "Leh", "Kyoto", "Jaipur"]}
US_STATES = ["California", "Texas", "New York", "Florida", "Illinois", "Ohio"]

# Published test numbers from payment-provider documentation (all pass Luhn / mod-97).
TEST_CARDS = ["4111111111111111", "4242424242424242", "4012888888881881", "5555555555554444", "5105105105105100",
              "378282246310005", "371449635398431", "6011111111111117", "3530111333300000", "4000056655665556",
              "5200828282828210", "6011000990139424", "3566002020360505", "2223003122003222"]
TEST_IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "GB29NWBK60161331926819",
              "FR1420041010050500013M02606", "ES9121000418450200051332", "NL91ABNA0417164300"]


class Case:
    """Per-case state, so related slots ({pf} and {pf_dob}) agree."""

    def __init__(self, lang, rng, fakers):
        self.lang, self.rng, self.fakers = lang, rng, fakers
        self.fake = fakers[LOCALE[lang]]
        self.cache = {}

    def public_figure(self, which=0):
        key = f"pf{which}"
        if key not in self.cache:
            pool = [p for p in PUBLIC_FIGURES[self.lang] if which == 0 or p[0] != self.cache.get("pf0", ("",))[0]]
            if which == 0 and "need_dob" in self.cache:
                pool = [p for p in pool if p[1] is not None]
            self.cache[key] = self.rng.choice(pool)
        return self.cache[key]


def slot_value(slot, c: Case):
    rng, fake, lang = c.rng, c.fake, c.lang
    f = c.fakers
    if slot in ("name", "name_plain"):
        return fake.name()
    if slot == "email":
        return fake.free_email()
    if slot == "email_obf":
        return gv.obfuscate_email(fake.free_email(), lang, rng)
    if slot == "phone":
        return fake.phone_number()
    if slot == "phone_words":
        return gv.digits_to_words(fake.phone_number().split("x")[0], lang, rng)
    if slot == "phone_fw":
        return gv.fullwidth(fake.phone_number().split("x")[0])
    if slot == "phone_deva":
        return gv.devanagari_digits(fake.phone_number())
    if slot == "address":
        return fake.address().replace("\n", ", ")
    if slot == "ssn":
        return f["en_US"].ssn()
    if slot == "ssn_spaced":
        return gv.spaced_digits(f["en_US"].ssn())
    if slot == "nino":
        return gv.gen_nino(rng)
    if slot == "dni":
        v = gv.gen_dni(rng)
        return rng.choice([v, v[:8] + "-" + v[8]])
    if slot == "nie":
        return gv.gen_nie(rng)
    if slot == "nir":
        v = f["fr_FR"].ssn()
        assert gv.nir_ok(v), v
        return rng.choice([v, f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}"])
    if slot == "cf":
        v = f["it_IT"].ssn()
        assert gv.cf_ok(v), v
        return v
    if slot in ("aadhaar", "aadhaar_spaced"):
        v = gv.gen_aadhaar(rng)
        if slot == "aadhaar_spaced":
            return gv.spaced_digits(v)
        return rng.choice([v, f"{v[:4]} {v[4:8]} {v[8:]}"])
    if slot == "pan":
        return gv.gen_pan(rng)
    if slot in ("cnid", "cnid_fw"):
        v = f["zh_CN"].ssn()
        assert gv.cnid_ok(v), v
        return gv.fullwidth(v) if slot == "cnid_fw" else v
    if slot == "steuerid":
        v = gv.gen_steuerid(rng)
        return rng.choice([v, f"{v[:2]} {v[2:5]} {v[5:8]} {v[8:]}"])
    if slot == "ausweis":
        return gv.gen_ausweis(rng)
    if slot == "passport":
        return fake.passport_number() if lang not in ("zh",) else rng.choice("EG") + "".join(
            rng.choice(string.digits) for _ in range(8))
    if slot == "dl_us":
        return gv.gen_us_dl(rng)
    if slot == "dl_uk":
        return gv.gen_uk_dl(rng, f["en_GB"].last_name())
    if slot == "dl_de":
        return gv.gen_de_dl(rng)
    if slot == "dl_fr":
        return gv.gen_fr_dl(rng)
    if slot == "dl_in":
        return gv.gen_in_dl(rng)
    if slot in ("card", "card_spaced", "card_zw"):
        while True:
            num = f["en_US"].credit_card_number(rng.choice(["visa16", "mastercard", "amex", "discover", "jcb16"]))
            if num not in TEST_CARDS:
                break
        assert gv.luhn_ok(num), num
        if slot == "card_spaced":
            return gv.spaced_digits(num)
        if slot == "card_zw":
            return gv.zero_width(num, rng)
        return gv.fmt_card(num, rng)
    if slot == "unionpay":
        v = gv.gen_cn_unionpay(rng)
        return rng.choice([v, gv.group4(v)])
    if slot == "exp":
        return f["en_US"].credit_card_expire()
    if slot == "cvv":
        return f["en_US"].credit_card_security_code()
    if slot == "iban":
        v = f[IBAN_LOCALE[lang]].iban()
        assert gv.mod97_ok(v), v
        return rng.choice([v, gv.group4(v)])
    if slot == "aba":
        v = f["en_US"].aba()
        assert gv.aba_ok(v), v
        return v
    if slot == "acct":
        return gv.gen_account(rng)
    if slot == "sortcode":
        return gv.gen_sortcode(rng)
    if slot == "ifsc":
        return gv.gen_ifsc(rng)
    if slot == "dob":
        return gv.fmt_date(fake.date_of_birth(minimum_age=18, maximum_age=90), lang, rng)
    if slot == "cond":
        return rng.choice(CONDITIONS[lang])
    if slot == "drug":
        return rng.choice(DRUGS[lang])
    if slot == "aws":
        return gv.gen_aws_key(rng)
    if slot == "aws_secret":
        return gv.gen_aws_secret(rng)
    if slot == "github":
        return gv.gen_github(rng)
    if slot == "slack":
        return gv.gen_slack(rng)
    if slot == "stripe":
        return gv.gen_stripe(rng)
    if slot == "google":
        return gv.gen_google(rng)
    if slot == "openai":
        return gv.gen_openai(rng)
    if slot == "hf":
        return gv.gen_hf(rng)
    if slot == "jwt":
        return gv.gen_jwt(rng, fake)
    if slot == "pem":
        return gv.gen_pem(rng)
    if slot == "connstr":
        return gv.gen_connstr(rng, f["en_US"])
    if slot == "pw":
        return gv.gen_password(rng)
    if slot == "username":
        return f["en_US"].user_name()
    if slot == "gps":
        return gv.fmt_gps(rng, fake)
    if slot == "dms":
        return gv.fmt_dms(rng, fake)
    if slot == "maps":
        return gv.fmt_maps_url(rng, fake)
    if slot == "age":
        return str(rng.randrange(19, 88))
    if slot == "city":
        return fake.city()
    if slot == "salary":
        amount = rng.randrange(28, 180) * 1000
        return {"en": f"${amount:,}", "es": f"{amount:,} €".replace(",", "."),
                "de": f"{amount:,} €".replace(",", "."), "fr": f"{amount:,} €".replace(",", " "),
                "zh": f"{amount // 1000 * 10}万元" if amount > 100000 else f"{amount}元",
                "hi": f"{amount // 1000} lakh rupaye" if False else f"₹{amount * 10:,}"}[lang]
    if slot == "company":
        return fake.company()
    if slot == "year":
        return str(rng.randrange(1990, 2024))
    # ---- negative-only slots ----
    if slot == "pf":
        return c.public_figure(0)[0]
    if slot == "pf2":
        return c.public_figure(1)[0]
    if slot == "pf_dob":
        return gv.fmt_date(c.public_figure(0)[1], lang, rng)
    if slot == "disease":
        return rng.choice(DISEASES[lang])
    if slot == "otc":
        return rng.choice(OTC[lang])
    if slot == "drug_generic":
        return rng.choice(DRUG_GENERIC[lang])
    if slot == "state":
        return rng.choice(US_STATES)
    if slot == "order":
        n = rng.randrange(16, 20) if lang == "zh" else rng.randrange(6, 11)
        return rng.choice("123456789") + "".join(rng.choice(string.digits) for _ in range(n - 1))
    if slot == "invoice":
        return f"INV-{rng.randrange(2019, 2027)}-{rng.randrange(0, 99999):05d}"
    if slot == "ups":
        return "1Z" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(6)) + \
            "".join(rng.choice(string.digits) for _ in range(10))
    if slot == "amazon_order":
        return f"{rng.randrange(100, 999)}-{rng.randrange(0, 9999999):07d}-{rng.randrange(0, 9999999):07d}"
    if slot == "refno":
        return "".join(rng.choice(string.digits) for _ in range(rng.randrange(8, 13)))
    if slot == "isbn13":
        return gv.gen_isbn13(rng)
    if slot == "ver1":
        return rng.choice(["10.4.2", "v2.14.3", "3.11.7", "1.0.0-rc.2", "16.2"])
    if slot == "ver2":
        return rng.choice(["11.0.1", "v2.15.0", "3.12.1", "1.0.0", "17.0.3"])
    if slot == "torchver":
        return rng.choice(["2.3.1+cu121", "2.1.0", "1.13.1+cpu"])
    if slot == "chromever":
        return rng.choice(["124.0.6367.91", "120.0.6099.109", "126.0.6478.126"])
    if slot == "winbuild":
        return rng.choice(["10.0.19045.2965", "10.0.22631.3447", "22621.1702"])
    if slot in ("a", "b", "c"):
        return str(rng.randrange(100, 99999))
    if slot == "big":
        return str(rng.randrange(10**8, 10**12))
    if slot in ("n3", "n3b"):
        return str(rng.randrange(200, 999))
    if slot == "n4":
        return str(rng.randrange(1000, 9999))
    if slot == "testcard":
        v = rng.choice(TEST_CARDS)
        return rng.choice([v, gv.group4(v)]) if len(v) == 16 else v
    if slot == "testiban":
        v = rng.choice(TEST_IBANS)
        return rng.choice([v, gv.group4(v)])
    if slot == "sha":
        return f["en_US"].sha1()
    if slot == "uuid":
        return f["en_US"].uuid4()
    if slot in ("date", "date2"):
        d = D(2024, 1, 1) + datetime.timedelta(days=rng.randrange(0, 900))
        return gv.fmt_date(d, lang, rng)
    if slot == "city_world":
        return rng.choice(CITIES_WORLD[lang])
    raise KeyError(f"unknown slot {slot}")


def fill(template, c: Case):
    fields = [fn for _, fn, _, _ in string.Formatter().parse(template) if fn]
    if "pf_dob" in fields:
        c.cache["need_dob"] = True
    values, cats = {}, set()
    for fn in fields:
        if fn not in values:
            values[fn] = slot_value(fn, c)
        if fn in SLOT_CATEGORY:
            cats.add(SLOT_CATEGORY[fn])
    return template.format(**values), cats


def build_split(split, seed):
    rng = random.Random(seed)
    locales = sorted(set(LOCALE.values()) | set(IBAN_LOCALE.values()) | {"en_US", "en_GB", "fr_FR", "it_IT", "zh_CN"})
    fakers = {}
    for i, loc in enumerate(locales):
        fk = faker.Faker(loc)
        fk.seed_instance(seed * 100 + i)
        fakers[loc] = fk
    cases = []
    for lang in LANGS:
        for table, counts, sensitive in ((SENSITIVE, SENSITIVE_COUNTS, True), (NEGATIVE, NEGATIVE_COUNTS, False)):
            for group, count in counts.items():
                templates = table[lang][group]
                allowed = templates if split != "dev" else [t for i, t in enumerate(templates) if i % 4 != 3]
                start = rng.randrange(len(allowed))
                for k in range(count):
                    t = allowed[(start + k) % len(allowed)]
                    c = Case(lang, rng, fakers)
                    text, cats = fill(t, c)
                    assert bool(cats) == sensitive, (lang, group, t)
                    cases.append({
                        "id": f"{split}-{lang}-{group}-{k:02d}",
                        "split": split, "lang": lang, "group": group, "text": text,
                        "sensitive": sensitive, "categories": sorted(cats),
                    })
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.jsonl"))
    args = ap.parse_args()
    if faker.VERSION != FAKER_VERSION:
        print(f"warning: faker {faker.VERSION} != {FAKER_VERSION}; the corpus will differ", file=sys.stderr)
    for v in TEST_CARDS:
        assert gv.luhn_ok(v), v
    for v in TEST_IBANS:
        assert gv.mod97_ok(v), v
    all_cases = []
    for split, seed in SPLITS.items():
        all_cases += build_split(split, seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for case in all_cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    for split in SPLITS:
        cs = [c for c in all_cases if c["split"] == split]
        pos = sum(c["sensitive"] for c in cs)
        print(f"{split}: {len(cs)} cases, {pos} sensitive, {len(cs) - pos} not sensitive", file=sys.stderr)


if __name__ == "__main__":
    main()
