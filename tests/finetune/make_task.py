#!/usr/bin/env python3
"""Intent classification of retail / field-service support messages, for `edgewise finetune`.

Writes (to the folder given, default tests/finetune/data/):
  train.jsonl  1,200 examples  {"prompt", "completion"}   (prompt = INSTRUCTION + message)
  dev.jsonl      240 examples  same format, other seed (and a few templates only dev uses)
  dev_fewshot.jsonl            the dev prompts in the few-shot form the base model is scored with
Also: `to_prompts.py`-style conversion of a {"text", "intent"} file (the blind test split):
  make_task.py convert IN.jsonl OUT_DIR   -> OUT_DIR/{zeroshot,fewshot}.jsonl

Messages are built from per-intent templates, slot vocabularies (products, order numbers,
stores, services, faults), openers/closers, case and punctuation changes, and typos (dropped,
doubled and swapped letters). Seeds are fixed: the files are reproducible byte for byte.
"""
import json
import os
import random
import sys

LABELS = ["order_status", "return_refund", "cancel_order", "change_delivery", "payment_issue",
          "product_question", "store_info", "schedule_service", "report_fault", "account_help"]

INSTRUCTION = "Classify this support message into an intent label.\nMessage: "

FEWSHOT_HEAD = ("Classify the support message into exactly one of these intents: " + ", ".join(LABELS) +
                ". Answer with the label only.\n\n")
FEWSHOT = [
    ("Where is my package? It was supposed to arrive Monday.", "order_status"),
    ("I want to send back the shoes and get my money back", "return_refund"),
    ("Please cancel order 55120, I ordered by mistake", "cancel_order"),
    ("Can you deliver to my office address instead?", "change_delivery"),
    ("My card was charged twice for the same purchase", "payment_issue"),
    ("Is this drill compatible with 18V batteries?", "product_question"),
    ("What time does your downtown store close on Sunday?", "store_info"),
    ("I need a technician to install my dishwasher next week", "schedule_service"),
    ("The heater you installed stopped working and shows error E4", "report_fault"),
    ("I can't log in, the password reset email never comes", "account_help"),
]

PRODUCTS = ["washing machine", "dishwasher", "fridge", "sofa", "laptop", "phone case", "running shoes",
            "jacket", "coffee maker", "vacuum cleaner", "TV", "mattress", "desk lamp", "headphones",
            "blender", "air conditioner", "printer", "microwave", "garden hose", "kids bike", "drill",
            "router", "tablet", "office chair", "dryer", "boiler", "water heater", "smart thermostat"]
STORES = ["downtown", "Riverside", "the mall", "North Park", "the airport", "Main Street", "Eastgate",
          "your Lyon", "the Berlin Mitte", "Westfield"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "tomorrow",
        "next week", "the weekend", "the 14th", "this afternoon"]
SERVICES = ["installation", "repair visit", "maintenance check", "annual service", "technician visit",
            "setup appointment", "inspection", "boiler service"]
FAULTS = ["is leaking water", "won't turn on", "makes a loud grinding noise", "shows error code E{n}",
          "stopped cooling", "keeps tripping the breaker", "is smoking", "has a cracked screen",
          "doesn't heat anymore", "beeps constantly", "arrived broken", "stopped working after a day"]
PAYMENT = ["paypal", "my credit card", "apple pay", "the gift card", "my debit card", "klarna"]

def order_no(r):
    return r.choice(["#", "order ", "no. ", "", "ord-"]) + str(r.randint(10000, 999999))

T = {
    "order_status": [
        "where is my order {o}", "has my {p} shipped yet?", "tracking for {o} hasn't updated in {k} days",
        "when will my {p} arrive", "my order {o} still says processing, what's going on",
        "is {o} out for delivery today?", "I ordered a {p} last week and heard nothing since",
        "can you give me an update on my delivery", "package status for {o} please",
        "it says delivered but I don't have my {p}", "how long until my {p} gets here",
        "any news on order {o}? still waiting",
    ],
    "return_refund": [
        "I want to return my {p}", "how do I get a refund for {o}", "the {p} is too small, can I send it back",
        "still waiting on my refund for the {p}", "can I exchange the {p} for a different size",
        "return label for {o} please", "I returned the {p} {k} days ago and no money yet",
        "want my money back for the {p}, it's not what I expected", "what is your return policy on a {p}",
        "refund hasn't shown up on {pay}",
    ],
    "cancel_order": [
        "please cancel my order {o}", "I need to cancel the {p} I just ordered", "cancel {o} asap",
        "can I still cancel before it ships?", "I changed my mind about the {p}, cancel it please",
        "stop my order {o}, ordered twice by mistake", "how do I cancel an order",
        "don't send the {p}, I want to cancel", "cancel the whole order please, found it cheaper",
    ],
    "change_delivery": [
        "can I change the delivery address for {o}", "please deliver the {p} on {d} instead",
        "I won't be home {d}, can you reschedule the delivery", "leave the parcel with my neighbour please",
        "update shipping address on {o} to my work", "can the {p} be delivered to {s} store instead",
        "move my delivery slot to {d}", "need to change where my {p} is being shipped",
        "can the courier come after 5pm for {o}",
    ],
    "payment_issue": [
        "I was charged twice for {o}", "my payment with {pay} keeps failing", "why was my card declined",
        "there's a charge I don't recognise on {pay}", "the discount code didn't apply at checkout",
        "I paid but the order says unpaid", "checkout error when paying with {pay}",
        "you took money for the {p} but cancelled the order", "invoice for {o} shows the wrong amount",
        "can I pay in instalments for the {p}",
    ],
    "product_question": [
        "does the {p} come with a warranty", "what are the dimensions of the {p}",
        "is the {p} available in black", "will the {p} fit in a small kitchen",
        "how loud is the {p}", "does this {p} work with 220V", "is the {p} waterproof",
        "what's the difference between the two {p} models", "is the {p} back in stock",
        "how much power does the {p} use",
    ],
    "store_info": [
        "what are the opening hours of the {s} store", "is the {s} shop open on {d}",
        "where is your nearest store", "do you have parking at {s}", "what's the address of the {s} branch",
        "is {s} store open late", "phone number for the {s} store please",
        "are you open on public holidays", "can I pick up in store at {s}",
    ],
    "schedule_service": [
        "I'd like to book a {v} for my {p}", "can a technician come {d} for the {v}",
        "schedule {v} for the {p} please", "need someone to install my new {p}",
        "book me an appointment for a {v}", "when is the next available slot for a {v}",
        "can I reschedule my {v} to {d}", "I need my {p} serviced, what dates do you have",
        "arrange a {v} at my house {d}",
    ],
    "report_fault": [
        "my {p} {f}", "the {p} you installed {f}", "the new {p} {f}, please help",
        "after the repair the {p} {f} again", "urgent: {p} {f}", "hi, our {p} {f} since {d}",
        "the {p} {f}, is this covered", "technician left and now the {p} {f}",
    ],
    "account_help": [
        "I can't log into my account", "how do I reset my password", "I never got the verification email",
        "please delete my account", "how do I change the email on my account", "my account is locked",
        "can't update my phone number in my profile", "I want to unsubscribe from your newsletter",
        "two-factor code isn't arriving", "someone else might be using my account",
    ],
}
# Only dev uses these (wording the training set never shows).
DEV_ONLY = {
    "order_status": ["yo where's my stuff, order {o}"],
    "return_refund": ["how many days do I have to bring back a {p}"],
    "cancel_order": ["scrap order {o} please"],
    "change_delivery": ["redirect parcel {o} to my parents house"],
    "payment_issue": ["{pay} says payment pending for two days"],
    "product_question": ["does the {p} need assembling"],
    "store_info": ["when does {s} close tonight"],
    "schedule_service": ["put me down for a {v} on {d}"],
    "report_fault": ["help! {p} {f}"],
    "account_help": ["forgot my login details"],
}
OPENERS = ["", "", "", "Hi, ", "Hello, ", "hey ", "Good morning, ", "Hi team, ", "Dear support, ", "Quick question: "]
CLOSERS = ["", "", "", " thanks", " Thank you!", " thx", " asap please", " Regards, Sam", " cheers", "!!", "?"]


def typo(r, s):
    if len(s) < 6:
        return s
    i = r.randrange(1, len(s) - 2)
    kind = r.randrange(3)
    if kind == 0:
        return s[:i] + s[i + 1:]
    if kind == 1:
        return s[:i] + s[i] + s[i:]
    return s[:i] + s[i + 1] + s[i] + s[i + 2:]


def message(r, intent, dev):
    pool = T[intent] + (DEV_ONLY[intent] if dev else [])
    t = r.choice(pool)
    s = t.format(o=order_no(r), p=r.choice(PRODUCTS), k=r.randint(2, 14), d=r.choice(DAYS), s=r.choice(STORES),
                 v=r.choice(SERVICES), f=r.choice(FAULTS).format(n=r.randint(1, 40)), pay=r.choice(PAYMENT))
    s = r.choice(OPENERS) + s + r.choice(CLOSERS)
    c = r.random()
    if c < 0.15:
        s = s.lower()
    elif c < 0.22:
        s = s.upper() if len(s) < 40 else s
    elif c < 0.6:
        s = s[0].upper() + s[1:]
    for _ in range(r.choice([0, 0, 0, 1, 1, 2])):
        s = typo(r, s)
    return s.strip()


def fewshot_prompt(text):
    shots = "".join(f"Message: {m}\nIntent: {l}\n\n" for m, l in FEWSHOT)
    return FEWSHOT_HEAD + shots + f"Message: {text}\nIntent:"


def split(seed, n, dev):
    r = random.Random(seed)
    out = []
    seen = set()
    while len(out) < n:
        intent = LABELS[len(out) % len(LABELS)]
        m = message(r, intent, dev)
        if m in seen:
            continue
        seen.add(m)
        out.append((m, intent))
    r.shuffle(out)
    return out


def write(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def convert(src, out_dir):
    rows = [json.loads(l) for l in open(src) if l.strip()]
    os.makedirs(out_dir, exist_ok=True)
    write(os.path.join(out_dir, "zeroshot.jsonl"), [{"prompt": INSTRUCTION + x["text"], "completion": x["intent"]} for x in rows])
    write(os.path.join(out_dir, "fewshot.jsonl"), [{"prompt": fewshot_prompt(x["text"]), "completion": x["intent"]} for x in rows])
    print(f"{len(rows)} examples -> {out_dir}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "convert":
        return convert(sys.argv[2], sys.argv[3])
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    os.makedirs(out, exist_ok=True)
    train = split(17, 1200, dev=False)
    dev = split(29, 240, dev=True)
    tr = {m for m, _ in train}
    dev = [(m, l) for m, l in dev if m not in tr]
    write(os.path.join(out, "train.jsonl"), [{"prompt": INSTRUCTION + m, "completion": l} for m, l in train])
    write(os.path.join(out, "dev.jsonl"), [{"prompt": INSTRUCTION + m, "completion": l} for m, l in dev])
    write(os.path.join(out, "dev_fewshot.jsonl"), [{"prompt": fewshot_prompt(m), "completion": l} for m, l in dev])
    print(f"train {len(train)}, dev {len(dev)} (dev messages also in train: removed) -> {out}")


if __name__ == "__main__":
    main()
