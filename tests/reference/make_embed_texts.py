# Writes tests/golden/minilm/texts.jsonl: the 200 texts of the embedding goldens (empty, whitespace,
# products, questions, German, Chinese, other scripts, emoji, code/URLs, long texts over 256 tokens).
# Deterministic (seeded); run from the repository root with any python3.
import json, random
random.seed(15)
T = []
T += ["", " ", "\n\t", "a", "A.", "?", "[CLS]", "[SEP] [PAD] [MASK]", "hello", "Hello, world!"]
products = ["red running shoes", "waterproof hiking boots, size 44", "stainless steel water bottle 750 ml",
 "wireless noise-cancelling headphones", "organic cotton t-shirt (white, M)", "ergonomic office chair with lumbar support",
 "cast iron skillet 12 inch", "LED desk lamp with USB-C charging port", "kids' bicycle helmet, blue", "yoga mat 6mm non-slip",
 "espresso machine with milk frother", "ceramic vase, hand-painted", "4K HDMI cable 2m", "mechanical keyboard, brown switches",
 "gluten-free pasta 500g", "dark roast coffee beans 1kg", "bamboo cutting board set", "leather wallet RFID blocking",
 "smartwatch with heart-rate monitor", "linen bed sheets queen size", "pet hair vacuum cleaner", "children's picture book about dinosaurs",
 "electric toothbrush refill heads (4-pack)", "winter down jacket for women", "men's slim-fit chinos, navy", "portable bluetooth speaker IPX7",
 "scented soy candle lavender", "acrylic paint set 24 colors", "cordless drill 18V with two batteries", "memory foam pillow"]
T += products
questions = ["Do you have these shoes in a larger size?", "What is the return policy for electronics?", "How long does shipping to Canada take?",
 "Is this jacket warm enough for -20°C?", "Can I wash the sheets at 60 degrees?", "Which headphones are best for flights?",
 "Is the coffee fair trade?", "Does the lamp work with a dimmer?", "What's the difference between these two chairs?",
 "Are the batteries included?", "Where is my order #A-1029-XZ?", "I want something like my last purchase but cheaper.",
 "gift ideas for a 10 year old who likes science", "cheap but good laptop for students", "vegan leather bags under $50",
 "show me something similar to the blue helmet", "What does IPX7 mean?", "Why is the sky blue?", "The quick brown fox jumps over the lazy dog.",
 "To be, or not to be, that is the question."]
T += questions
german = ["Rote Laufschuhe für Damen, Größe 39", "Wasserdichte Wanderschuhe mit Vibram-Sohle", "Wie lange dauert der Versand nach Österreich?",
 "Ich möchte die Bestellung stornieren.", "Kaffeebohnen aus fairem Handel, 1 kg", "Bettwäsche aus Leinen, 155×220 cm",
 "Straße, Grüße, Äpfel, Übermaß", "Das Wetter ist heute schön und sonnig.", "Kinderfahrradhelm in Blau mit LED-Rücklicht",
 "Donaudampfschifffahrtsgesellschaftskapitänsmütze"]
T += german
chinese = ["红色跑步鞋", "防水登山靴，44码", "无线降噪耳机", "这件外套冬天够暖和吗？", "有机棉T恤，白色，中号",
 "我想买一个和上次类似但更便宜的东西", "不锈钢保温杯 750毫升", "请问什么时候发货？", "儿童恐龙绘本", "咖啡豆 深度烘焙 1公斤"]
T += chinese
other = ["赤いランニングシューズ", "방수 등산화", "Chaussures de course rouges pour femmes", "Zapatillas de running rojas",
 "Scarpe da corsa rosse", "Красные кроссовки для бега", "حذاء جري أحمر", "לבן ואדום", "κόκκινα παπούτσια", "Kırmızı koşu ayakkabısı",
 "café crème brûlée naïve façade", "ÀÉÎÕÜ àéîõü ñ ç ø å", "Ǆ ǅ ǆ ﬁ ﬂ ﬀ", "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ １２３"]
T += other
emoji = ["👟❤️", "Love these shoes 😍😍😍", "🔥 deal 🔥 50% off!!!", "👨‍👩‍👧‍👦 family pack", "🇩🇪🇨🇳🇺🇸", "☕️ + 🥐 = ❤", "🙂", "rocket 🚀 to the moon 🌕",
 "thumbs up 👍🏽👍🏿", "no emoji here :) :-( ;-)"]
T += emoji
misc = ["https://example.com/products/12345?color=red&size=42", "user@example.com", "SKU: RS-2024-RED-42", "+49 30 1234567",
 "$19.99 USD / €18,50 EUR", "3.14159265358979323846", "1,000,000", "2026-12-06T19:40:00Z", "fn main() { println!(\"hi\"); }",
 "SELECT * FROM products WHERE price < 50;", "<b>bold</b> &amp; <i>italic</i>", "C:\\Users\\shop\\cart.json", "ALL CAPS SHOUTING TEXT",
 "mIxEd CaSe TeXt", "tab\tseparated\tvalues", "line one\nline two\nline three", "trailing spaces    ", "    leading spaces",
 "a" * 300, "supercalifragilisticexpialidocious antidisestablishmentarianism", "x y z " * 20, "!!!???...,,,;;;",
 "\u200b zero\u200bwidth \u200d joiner", "control\u0007char\u0001s", "ﬁnancial ﬂow", "naïve coöperate résumé", "I ❤ NY",
 "#hashtag @mention", "10% off on orders > $100", "Q&A: shipping"]
T += misc
words = "soft durable lightweight breathable stylish comfortable premium classic modern vintage compact portable sturdy elegant warm cool eco-friendly handmade waterproof adjustable".split()
nouns = "shoe jacket lamp chair mug bottle bag watch speaker pillow blanket sofa table shirt dress helmet bike tent backpack kettle".split()
while len(T) < 180:
    n = random.randint(3, 40)
    s = " ".join(random.choice(words + nouns) for _ in range(n))
    T.append(s.capitalize() + ".")
lincoln = open("tests/reference/texts/long_prompt_lincoln_second_inaugural.txt").read()
long_texts = [lincoln, lincoln[:1500], lincoln[1000:3500], (" ".join(products)) * 3, "Das ist ein sehr langer deutscher Satz über Schuhe. " * 40,
 "这是一个很长的中文句子，关于鞋子和衣服。" * 40, "😀" * 400, "word " * 600, ". " * 400, "Long review: " + " ".join(questions) * 2]
T += long_texts
while len(T) < 200:
    n = random.randint(60, 120)
    T.append(" ".join(random.choice(words + nouns) for _ in range(n)))
assert len(T) == 200
with open("tests/golden/minilm/texts.jsonl", "w") as f:
    for i, t in enumerate(T):
        f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
print(len(T))
