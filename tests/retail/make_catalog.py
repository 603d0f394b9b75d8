#!/usr/bin/env python3
"""Synthesizes the retail evaluation set and scores two baselines on it.

Writes into tests/retail/data/ (or --out):
  items.jsonl       the catalog: {"id","title","description","attributes":{category,type,price,in_stock,brand}}
  sessions.jsonl    one shopper per line: {"session","split","events":[{item_id|query,kind,ts}],"target"}
  texts.jsonl       every text a recommender embeds: {"id":"item:<id>"|"query:<n>","text"}; run an encoder
                    over it (`edgewise embed`) to evaluate with real vectors
  popularity.json   interaction counts per item over the histories (never the held-out targets)
  baselines.json    hit@10 and nDCG@10 of most-popular and TF-IDF on the tune and test splits
  example_events.jsonl  one test shopper's history, as the CLI reads it

Protocol (the Rust evaluation, retail/tests/eval.rs, implements the same): leave-last-out. Each
session's last event is the target (an item the shopper had not touched before, in stock); the
recommender sees the events before it. Candidates: every in-stock item the shopper has not
interacted with. hit@10: the target is in the top 10; nDCG@10: 1/log2(rank+1) for a hit at rank
(1-based), else 0 (one relevant item, so the ideal DCG is 1). Ties are broken by item id.
Sessions are split in halves (tune / test) by a seeded shuffle before anything is scored: tune
any knob on the tune half only.

Shoppers: each starts with an interest (a product type), views mostly popular items of it, carts,
buys, dismisses the odd unrelated item, searches, and drifts to another type now and then (often
announced by a search for it; more often within the same category). Deterministic (seed 15).
Plain Python 3, no packages.
"""
import argparse
import json
import math
import os
import random
from collections import Counter, defaultdict

SEED = 15

# category -> type -> (nouns, features, uses, price range)
CATALOG = {
    "running": {
        "trail running shoe": (["Trail Running Shoe", "Trail Runner"], ["grippy lugged outsole", "rock plate", "waterproof mesh upper", "reinforced toe cap", "quick lace system"], ["muddy forest trails", "mountain races", "technical singletrack"], (70, 180)),
        "road running shoe": (["Road Running Shoe", "Daily Trainer"], ["responsive foam midsole", "breathable knit upper", "carbon plate", "high stack cushioning", "reflective heel"], ["marathon training", "daily road miles", "tempo runs on asphalt"], (60, 250)),
        "running watch": (["GPS Running Watch", "Multisport Watch"], ["wrist heart rate sensor", "multi-band GPS", "two-week battery", "interval training plans", "sunlight-readable display"], ["tracking pace and distance", "structured workouts", "ultra races"], (120, 600)),
        "running apparel": (["Running Tights", "Running Jacket", "Running Socks"], ["moisture-wicking fabric", "zip pocket", "windproof shell", "anti-blister knit", "reflective details"], ["cold morning runs", "long runs", "night running"], (15, 140)),
    },
    "outdoor": {
        "tent": (["Backpacking Tent", "Dome Tent"], ["two doors and vestibules", "aluminium poles", "taped seams", "freestanding design", "ultralight ripstop fly"], ["alpine camping", "family camping weekends", "thru-hikes"], (120, 600)),
        "sleeping bag": (["Down Sleeping Bag", "Synthetic Sleeping Bag"], ["800-fill down", "draft collar", "water-resistant shell", "compression sack", "comfort rating to minus five"], ["cold nights in the mountains", "summer festivals", "winter camping"], (60, 450)),
        "hiking boot": (["Hiking Boot", "Mid Hiking Boot"], ["waterproof membrane", "ankle support", "vibram sole", "full-grain leather", "cushioned insole"], ["rocky day hikes", "multi-day treks", "wet spring trails"], (90, 260)),
        "backpack": (["Hiking Backpack", "Trekking Pack"], ["adjustable torso length", "rain cover", "hip belt pockets", "hydration sleeve", "ventilated back panel"], ["weekend trips", "long-distance trekking", "day hikes"], (50, 300)),
    },
    "coffee & tea": {
        "espresso coffee": (["Espresso Beans", "Espresso Blend"], ["dark chocolate notes", "single origin arabica", "medium-dark roast", "crema-rich blend", "freshly roasted whole beans"], ["morning espresso", "milk drinks and lattes", "moka pot brewing"], (9, 35)),
        "pour-over gear": (["Pour-Over Dripper", "Gooseneck Kettle", "Burr Coffee Grinder"], ["precise temperature control", "conical steel burrs", "ceramic cone", "slow flow spout", "paper filter compatible"], ["filter coffee at home", "slow weekend brewing", "light roast coffee"], (20, 220)),
        "green tea": (["Green Tea", "Matcha Powder", "Sencha Green Tea"], ["ceremonial grade", "grassy umami flavour", "loose leaf", "first flush harvest", "stone ground"], ["a calm afternoon cup", "matcha lattes", "daily antioxidant boost"], (8, 45)),
        "herbal tea": (["Herbal Tea", "Chamomile Infusion", "Peppermint Tea"], ["caffeine free", "organic herbs", "calming chamomile", "refreshing mint", "pyramid tea bags"], ["bedtime relaxation", "digestion after dinner", "iced summer tea"], (5, 25)),
    },
    "kitchen": {
        "chef knife": (["Chef Knife", "Santoku Knife", "Paring Knife"], ["forged German steel", "Damascus layered blade", "full tang handle", "razor sharp edge", "balanced weight"], ["slicing vegetables", "everyday meal prep", "precision cutting"], (25, 260)),
        "cast iron pan": (["Cast Iron Skillet", "Dutch Oven", "Grill Pan"], ["pre-seasoned surface", "enamelled interior", "oven safe to 260 C", "even heat retention", "heavy duty lid"], ["searing steaks", "slow braises and stews", "baking bread"], (30, 350)),
        "cutting board": (["Cutting Board", "Butcher Block"], ["end grain walnut", "juice groove", "bamboo construction", "non-slip feet", "reversible surface"], ["carving roasts", "serving cheese", "daily chopping"], (20, 150)),
        "stand mixer": (["Stand Mixer", "Hand Mixer"], ["planetary mixing action", "five litre bowl", "dough hook and whisk", "ten speed settings", "quiet motor"], ["baking bread and cakes", "whipping cream", "kneading pizza dough"], (40, 600)),
    },
    "audio": {
        "wireless earbuds": (["Wireless Earbuds", "True Wireless Earbuds"], ["active noise cancelling", "sweat resistant", "wireless charging case", "low latency mode", "30 hour battery"], ["commuting", "workouts at the gym", "phone calls on the go"], (30, 300)),
        "over-ear headphones": (["Over-Ear Headphones", "Studio Headphones"], ["plush memory foam cushions", "active noise cancelling", "hi-res audio drivers", "foldable design", "detachable cable"], ["long flights", "mixing music", "focused work"], (60, 450)),
        "bluetooth speaker": (["Bluetooth Speaker", "Portable Speaker"], ["waterproof rating", "360 degree sound", "deep bass", "party pairing", "12 hour battery"], ["beach days", "backyard parties", "showers and pools"], (25, 350)),
        "turntable": (["Turntable", "Record Player"], ["belt drive", "built-in phono preamp", "carbon fibre tonearm", "USB output", "solid wood plinth"], ["vinyl listening", "digitizing records", "living room hi-fi"], (100, 700)),
    },
    "home office": {
        "office chair": (["Ergonomic Office Chair", "Mesh Desk Chair"], ["adjustable lumbar support", "breathable mesh back", "4D armrests", "synchro tilt", "headrest"], ["long work days", "back pain relief", "home office setups"], (120, 900)),
        "standing desk": (["Standing Desk", "Sit-Stand Desk"], ["dual motor lift", "memory height presets", "bamboo top", "anti-collision sensor", "cable tray"], ["switching between sitting and standing", "gaming setups", "small home offices"], (200, 800)),
        "mechanical keyboard": (["Mechanical Keyboard", "Wireless Keyboard"], ["hot-swappable switches", "PBT keycaps", "RGB backlight", "tenkeyless layout", "tactile brown switches"], ["programming", "typing all day", "gaming"], (40, 250)),
        "desk lamp": (["LED Desk Lamp", "Monitor Light Bar"], ["adjustable colour temperature", "glare-free light", "USB charging port", "touch dimmer", "clamp mount"], ["late night work", "reading", "reducing eye strain"], (20, 150)),
    },
    "skincare": {
        "moisturizer": (["Daily Moisturizer", "Night Cream", "Hydrating Gel Cream"], ["hyaluronic acid", "ceramides", "fragrance free", "non-comedogenic", "shea butter"], ["dry skin", "sensitive skin", "overnight repair"], (10, 80)),
        "sunscreen": (["Mineral Sunscreen", "Sunscreen Lotion", "SPF 50 Sun Fluid"], ["broad spectrum SPF 50", "zinc oxide", "water resistant 80 minutes", "no white cast", "reef friendly"], ["beach holidays", "daily city wear", "outdoor sports"], (8, 45)),
        "cleanser": (["Gentle Cleanser", "Foaming Face Wash", "Cleansing Balm"], ["low pH formula", "removes makeup", "salicylic acid", "soothing oat extract", "sulfate free"], ["oily skin", "evening routine", "acne-prone skin"], (7, 40)),
        "serum": (["Vitamin C Serum", "Retinol Serum", "Niacinamide Serum"], ["brightening vitamin C", "encapsulated retinol", "ten percent niacinamide", "antioxidant blend", "dropper bottle"], ["dark spots", "fine lines", "uneven skin tone"], (12, 90)),
    },
    "toys & games": {
        "board game": (["Board Game", "Strategy Board Game", "Party Game"], ["two to six players", "cooperative play", "sixty minute playtime", "beautiful artwork", "expansion ready"], ["family game night", "game night with friends", "strategy lovers"], (15, 80)),
        "building blocks": (["Building Blocks Set", "Construction Bricks", "Magnetic Tiles"], ["500 pieces", "compatible with major brands", "step-by-step instructions", "storage box", "STEM learning"], ["creative kids", "rainy afternoons", "STEM education"], (15, 150)),
        "puzzle": (["Jigsaw Puzzle", "Wooden Puzzle"], ["1000 pieces", "matte finish", "poster included", "thick recycled board", "landscape artwork"], ["relaxing evenings", "family puzzles", "gift for puzzle fans"], (10, 45)),
        "plush toy": (["Plush Toy", "Stuffed Animal", "Teddy Bear"], ["ultra soft fabric", "machine washable", "embroidered eyes", "huggable size", "safe for newborns"], ["bedtime cuddles", "baby gifts", "kids room decor"], (8, 50)),
    },
    "fitness": {
        "yoga mat": (["Yoga Mat", "Travel Yoga Mat"], ["non-slip natural rubber", "six millimetre cushioning", "alignment lines", "carry strap", "sweat resistant surface"], ["hot yoga", "pilates", "home workouts"], (20, 120)),
        "dumbbells": (["Adjustable Dumbbells", "Hex Dumbbells", "Kettlebell"], ["quick-change weight dial", "rubber coated", "knurled grip", "space saving stand", "cast iron"], ["strength training at home", "full body workouts", "muscle building"], (30, 400)),
        "resistance bands": (["Resistance Bands", "Pull-Up Assist Bands"], ["five resistance levels", "latex free", "door anchor", "fabric loop bands", "travel pouch"], ["mobility work", "glute workouts", "travel fitness"], (10, 50)),
        "foam roller": (["Foam Roller", "Massage Gun"], ["high density foam", "textured surface", "deep tissue percussion", "quiet motor", "five speed settings"], ["muscle recovery", "post-run stretching", "sore backs"], (15, 250)),
    },
    "pets": {
        "dog food": (["Dry Dog Food", "Grain-Free Dog Food", "Puppy Food"], ["real chicken first ingredient", "grain free recipe", "added omega oils", "small kibble", "high protein"], ["active adult dogs", "growing puppies", "sensitive stomachs"], (15, 90)),
        "cat toy": (["Cat Toy", "Feather Wand", "Cat Scratching Post"], ["catnip filled", "interactive feather", "sisal rope", "self-play motion", "bell inside"], ["indoor cats", "playful kittens", "keeping claws healthy"], (5, 70)),
        "dog bed": (["Orthopedic Dog Bed", "Calming Dog Bed"], ["memory foam base", "washable cover", "raised bolsters", "non-skid bottom", "faux fur"], ["senior dogs", "anxious dogs", "large breeds"], (30, 180)),
        "dog leash": (["Dog Leash", "Retractable Leash", "Dog Harness"], ["padded handle", "reflective stitching", "no-pull front clip", "five metre cord", "quick release buckle"], ["daily walks", "training puppies", "night walks"], (10, 60)),
    },
    "books": {
        "mystery novel": (["Mystery Novel", "Detective Thriller", "Crime Novel"], ["a twisty plot", "an unreliable narrator", "a small-town murder", "a brilliant detective", "a locked-room puzzle"], ["fans of whodunits", "a gripping weekend read", "book clubs"], (8, 28)),
        "cookbook": (["Cookbook", "Baking Book", "Vegetarian Cookbook"], ["120 recipes", "step-by-step photos", "weeknight dinners", "plant-based meals", "sourdough baking"], ["home cooks", "beginner bakers", "meal planning"], (15, 45)),
        "science fiction": (["Science Fiction Novel", "Space Opera", "Dystopian Novel"], ["interstellar war", "artificial intelligence", "first contact", "a generation ship", "time travel"], ["sci-fi fans", "long flights", "readers who love big ideas"], (8, 30)),
        "travel guide": (["Travel Guide", "Hiking Guidebook", "City Guide"], ["fold-out maps", "itineraries for every budget", "hidden local gems", "trail descriptions", "food and drink tips"], ["planning a trip abroad", "weekend city breaks", "walking holidays"], (10, 35)),
    },
}

BRANDS = ["Northpeak", "Aldera", "Kestrel", "Lumen & Co", "Brightfield", "Solvig", "Tamarack", "Orbit", "Marlowe",
          "Havn", "Quill", "Copperline", "Ember", "Fjordwell", "Riverstone", "Atlas", "Juniper", "Velo", "Kindred",
          "Monarch", "Pinecrest", "Nimbus", "Wren", "Halcyon"]
ADJS = ["Classic", "Pro", "Ultra", "Essential", "Premium", "Lite", "Everyday", "Signature", "Max", "Compact", "Deluxe", "Original"]
COLORS = ["black", "white", "navy", "olive", "red", "grey", "sand", "teal"]

KIND_P = [("view", 0.72), ("add_to_cart", 0.16), ("purchase", 0.09), ("dismiss", 0.03)]


def make_catalog(rng):
    items, types = [], []
    n = 0
    for cat, tmap in CATALOG.items():
        for typ, (nouns, feats, uses, (lo, hi)) in tmap.items():
            types.append((cat, typ))
            for j in range(rng.randint(9, 12)):
                n += 1
                noun = rng.choice(nouns)
                brand = rng.choice(BRANDS)
                title = f"{brand} {rng.choice(ADJS)} {noun}"
                f = rng.sample(feats, 3)
                use = rng.choice(uses)
                desc = rng.choice([
                    f"A {noun.lower()} with {f[0]}, {f[1]} and {f[2]}. Made for {use}.",
                    f"Featuring {f[0]} and {f[1]}, this {noun.lower()} is ideal for {use}. Also has {f[2]}.",
                    f"{f[0].capitalize()}, {f[1]}, {f[2]}: everything you want for {use}.",
                ])
                attrs = {
                    "category": cat,
                    "type": typ,
                    "price": round(rng.uniform(lo, hi), 2),
                    "in_stock": rng.random() > 0.08,
                    "brand": brand,
                }
                if rng.random() < 0.5:
                    attrs["color"] = rng.choice(COLORS)
                items.append({"id": f"p{n:04d}", "title": title, "description": desc, "attributes": attrs})
    # Latent popularity: Zipf-like by a random rank within each type.
    pop = {}
    by_type = defaultdict(list)
    for it in items:
        by_type[it["attributes"]["type"]].append(it["id"])
    for typ, ids in by_type.items():
        rng.shuffle(ids)
        for r, i in enumerate(ids):
            pop[i] = 1.0 / (r + 1) ** 0.9
    return items, types, by_type, pop


def text_of(item):
    return f"{item['title']}. {item['description']}" if item["description"] else item["title"]


def weighted(rng, ids, pop, exclude):
    cand = [i for i in ids if i not in exclude]
    if not cand:
        return None
    return rng.choices(cand, weights=[pop[i] for i in cand])[0]


def make_sessions(rng, items, types, by_type, pop, n_sessions):
    by_id = {it["id"]: it for it in items}
    all_ids = [it["id"] for it in items]
    sessions = []
    for s in range(n_sessions):
        cat, typ = rng.choice(types)
        ts = 1_700_000_000 + rng.randint(0, 30 * 86400)
        events, touched, bought = [], set(), set()
        length = rng.randint(6, 24)
        for step in range(length):
            ts += int(rng.expovariate(1 / 80)) + 5
            if rng.random() < 0.15 and step > 0:  # drift
                if rng.random() < 0.6:
                    typ = rng.choice([t for c, t in types if c == cat and t != typ])
                else:
                    cat, typ = rng.choice([(c, t) for c, t in types if c != cat])
                if rng.random() < 0.3:
                    ts += rng.randint(3600, 3 * 86400)  # came back later
                if rng.random() < 0.5:
                    events.append({"kind": "search", "query": make_query(rng, typ), "ts": ts})
                    continue
            if rng.random() < 0.08:
                events.append({"kind": "search", "query": make_query(rng, typ), "ts": ts})
                continue
            kind = rng.choices([k for k, _ in KIND_P], weights=[p for _, p in KIND_P])[0]
            if kind == "dismiss":
                other = rng.choice([t for c, t in types if c != cat])
                iid = weighted(rng, by_type[other], pop, touched)
            elif rng.random() < 0.1:  # noise: something popular from anywhere
                iid = weighted(rng, all_ids, pop, bought)
            else:
                # Shoppers revisit: a third of views go back to an item they already looked at.
                seen_here = [i for i in touched if by_id[i]["attributes"]["type"] == typ and i not in bought]
                if seen_here and rng.random() < 0.3:
                    iid = rng.choice(sorted(seen_here))
                else:
                    iid = weighted(rng, by_type[typ], pop, bought)
            if iid is None:
                continue
            events.append({"item_id": iid, "kind": kind, "ts": ts})
            touched.add(iid)
            if kind in ("purchase", "dismiss"):
                bought.add(iid)
        # The held-out target: a new, in-stock item of the current interest.
        ts += int(rng.expovariate(1 / 80)) + 5
        cand = [i for i in by_type[typ] if i not in touched and by_id[i]["attributes"]["in_stock"]]
        if not cand or not any("item_id" in e for e in events):
            continue
        target = rng.choices(cand, weights=[pop[i] for i in cand])[0]
        sessions.append({"session": f"s{s:04d}", "events": events, "target": target, "target_ts": ts})
    return sessions


def make_query(rng, typ):
    for c, tmap in CATALOG.items():
        if typ in tmap:
            nouns, feats, uses, _ = tmap[typ]
            words = rng.choice([typ, rng.choice(nouns).lower()])
            extra = rng.choice(feats).split()[-1] if rng.random() < 0.6 else ""
            return f"{extra} {words}".strip()
    return typ


# ---- the protocol -------------------------------------------------------------------------

def candidates(session, items):
    touched = {e["item_id"] for e in session["events"] if "item_id" in e}
    return [it["id"] for it in items if it["attributes"]["in_stock"] and it["id"] not in touched]


def score_ranking(ranked, target):
    top = ranked[:10]
    if target in top:
        r = top.index(target) + 1
        return 1.0, 1.0 / math.log2(r + 1)
    return 0.0, 0.0


def rank_by(scores, cand):
    return sorted(cand, key=lambda i: (-scores.get(i, 0.0), i))


def evaluate(sessions, items, ranker):
    res = {}
    for split in ("tune", "test"):
        ss = [s for s in sessions if s["split"] == split]
        h = n = 0.0
        for s in ss:
            hit, nd = score_ranking(ranker(s, candidates(s, items)), s["target"])
            h += hit
            n += nd
        res[split] = {"sessions": len(ss), "hit@10": round(h / len(ss), 4), "ndcg@10": round(n / len(ss), 4)}
    return res


def popularity_counts(sessions):
    c = Counter()
    for s in sessions:
        for e in s["events"]:
            if "item_id" in e and e["kind"] != "dismiss":
                c[e["item_id"]] += 1
    return c


def tokens(text):
    out, w = [], []
    for ch in text.lower():
        if ch.isalnum():
            w.append(ch)
        elif w:
            out.append("".join(w))
            w = []
    if w:
        out.append("".join(w))
    return out


class Tfidf:
    def __init__(self, items):
        docs = {it["id"]: tokens(text_of(it)) for it in items}
        df = Counter()
        for t in docs.values():
            df.update(set(t))
        n = len(docs)
        self.idf = {w: math.log(n / d) + 1.0 for w, d in df.items()}
        self.vec = {i: self.vectorize_tokens(t) for i, t in docs.items()}

    def vectorize_tokens(self, toks):
        tf = Counter(toks)
        v = {w: (1 + math.log(c)) * self.idf[w] for w, c in tf.items() if w in self.idf}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    def ranker(self, s, cand):
        prof = Counter()
        for e in s["events"]:
            if e["kind"] == "dismiss":
                continue
            v = self.vec[e["item_id"]] if "item_id" in e else self.vectorize_tokens(tokens(e["query"]))
            for w, x in v.items():
                prof[w] += x
        scores = {i: sum(prof.get(w, 0.0) * x for w, x in self.vec[i].items()) for i in cand}
        return rank_by(scores, cand)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--sessions", type=int, default=800)
    a = ap.parse_args()
    rng = random.Random(SEED)
    items, types, by_type, pop = make_catalog(rng)
    sessions = make_sessions(rng, items, types, by_type, pop, a.sessions)
    order = list(range(len(sessions)))
    random.Random(SEED + 1).shuffle(order)
    half = len(order) // 2
    for k, i in enumerate(order):
        sessions[i]["split"] = "tune" if k < half else "test"

    counts = popularity_counts(sessions)
    pop_rank = lambda s, cand: rank_by(counts, cand)
    tfidf = Tfidf(items)
    baselines = {
        "protocol": "leave-last-out; candidates: in-stock items the shopper has not interacted with; top 10; ties by id",
        "items": len(items),
        "most_popular": evaluate(sessions, items, pop_rank),
        "tfidf": evaluate(sessions, items, tfidf.ranker),
    }
    os.makedirs(a.out, exist_ok=True)
    w = lambda name: open(os.path.join(a.out, name), "w", encoding="utf-8", newline="\n")
    with w("items.jsonl") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    with w("sessions.jsonl") as f:
        for s in sessions:
            f.write(json.dumps(s) + "\n")
    queries = sorted({e["query"] for s in sessions for e in s["events"] if e["kind"] == "search"})
    with w("texts.jsonl") as f:
        for it in items:
            f.write(json.dumps({"id": "item:" + it["id"], "text": text_of(it)}) + "\n")
        for n, q in enumerate(queries):
            f.write(json.dumps({"id": f"query:{n}", "text": q}) + "\n")
    with w("popularity.json") as f:
        json.dump(dict(sorted(counts.items())), f, indent=0)
        f.write("\n")
    with w("baselines.json") as f:
        json.dump(baselines, f, indent=2)
        f.write("\n")
    ex = next(s for s in sessions if s["split"] == "test")
    with w("example_events.jsonl") as f:
        for e in ex["events"]:
            f.write(json.dumps(e) + "\n")
    print(json.dumps(baselines, indent=2))
    print(f"{len(items)} items, {len(sessions)} sessions, {len(queries)} distinct queries -> {a.out}")


if __name__ == "__main__":
    main()
