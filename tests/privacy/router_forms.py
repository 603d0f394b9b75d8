"""Router-form wrappers for the classifier's training data (issue #18, round 4).

The gate sees a request as the router builds it: each part alone and all parts joined with a blank
line (core/src/router/policy.rs `gate_texts`), and at egress the wire form, where attachments are
appended to the last user message as "\\n\\n[Attachment N]\\n..." (ChatRequest::wire_messages). System
prompts, earlier turns and tool results therefore sit next to the user's words. These wrappers put a
case's text into such a form with harmless pieces only, so a wrapped case keeps its label; applied
to both classes alike they carry no label signal, and `harmless_request` builds whole harmless
router-form requests (the form itself must not look personal).
"""

import json
import random
import string

SYSTEM = {
    "en": ["You are a concise assistant.", "You are a helpful assistant. Answer briefly and accurately.",
           "You are the support assistant of an online shop. Be polite and keep answers short.",
           "You are a coding assistant. Prefer idiomatic code and explain briefly.",
           "System: answer in plain English, no more than five sentences.",
           "You are a field-service helper for technicians. Use bullet points."],
    "de": ["Du bist ein hilfreicher Assistent. Antworte kurz.", "Du bist der Support-Assistent eines Onlineshops.",
           "Antworte immer auf Deutsch und in höchstens fünf Sätzen."],
    "es": ["Eres un asistente útil. Responde de forma breve.", "Eres el asistente de soporte de una tienda online.",
           "Responde siempre en español y con frases cortas."],
    "fr": ["Tu es un assistant utile. Réponds brièvement.", "Tu es l'assistant du service client d'une boutique en ligne.",
           "Réponds toujours en français, en cinq phrases au plus."],
    "zh": ["你是一个简洁的助手。", "你是一家网店的客服助手，请礼貌简短地回答。", "请用中文回答，不超过五句话。"],
    "hi": ["You are a helpful assistant. Hinglish mein short jawab do.", "Aap ek support assistant ho, politely jawab do."],
}
INSTR = {
    "en": ["Summarise the attached note.", "What is the status of the {code} rollout?", "Translate the attachment into French.",
           "What does this document say?", "Proofread the attached text, please.", "Can you shorten this?",
           "Turn the attachment into a bulleted list.", "Check the attached file for mistakes.", "See attached.",
           "Rewrite this more politely:", "Explain the {code} module to a new colleague."],
    "de": ["Fasse den Anhang zusammen.", "Erzähl mir etwas über das Projekt {code}.", "Übersetze den Anhang ins Englische.",
           "Korrigiere bitte den angehängten Text."],
    "es": ["Resume el archivo adjunto.", "Háblame del proyecto {code}.", "Traduce el adjunto al inglés.",
           "Revisa el texto adjunto, por favor."],
    "fr": ["Résume la pièce jointe.", "Parle-moi du projet {code}.", "Traduis la pièce jointe en anglais.",
           "Relis le texte joint, s'il te plaît."],
    "zh": ["请总结附件内容。", "介绍一下{code}项目。", "把附件翻译成英文。", "帮我校对一下附件。"],
    "hi": ["Attachment ka summary de do.", "{code} project ke baare mein batao.", "Is file ko English mein translate karo."],
}
DOCS = {
    "en": ["Notes on {code}: draft 2, see the wiki for the diagram.", "Meeting notes: the release moves to the second week of the month; QA needs two more days.",
           "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
           "sku,name,price\nA-100,desk lamp,24.99\nA-101,office chair,149.00\nA-102,monitor arm,39.50",
           "Changelog v2.4.1: fixed a crash on startup, faster search, new dark theme.",
           "Recipe: 200 g flour, 2 eggs, 300 ml milk, a pinch of salt. Whisk and rest for 30 minutes.",
           "Agenda: 1. budget review 2. hiring plan 3. office move 4. any other business",
           "Error: connection timed out after 30 s (code 504). Retrying in 5 s.",
           "The quarterly report shows revenue up 4% and costs flat; the team recommends keeping the plan."],
    "de": ["Protokoll: Der Termin verschiebt sich um eine Woche, das Budget bleibt gleich.",
           "Rezept: 250 g Mehl, 3 Eier, 500 ml Milch.", "Änderungen in Version 3.2: schnellere Suche, neues Design."],
    "es": ["Acta: la entrega se retrasa una semana; el presupuesto no cambia.", "Receta: 200 g de harina, 2 huevos y leche.",
           "Cambios en la versión 3.2: búsqueda más rápida y nuevo diseño."],
    "fr": ["Compte rendu : la livraison est décalée d'une semaine, le budget reste le même.",
           "Recette : 200 g de farine, 2 œufs, 30 cl de lait.", "Nouveautés de la version 3.2 : recherche plus rapide."],
    "zh": ["会议纪要：发布推迟一周，预算不变。", "菜谱：面粉200克，鸡蛋2个，牛奶300毫升。", "3.2版更新：搜索更快，新界面。"],
    "hi": ["Meeting notes: launch ek hafte baad hoga, budget same rahega.", "Recipe: 2 cup atta, thoda namak, paani."],
}
ASSISTANT = {
    "en": ["Sure! What would you like to know?", "Here is a short summary: the plan stays the same.",
           "Of course. Could you share a bit more detail?", "Done. Anything else?"],
    "de": ["Klar, was möchtest du wissen?", "Gern. Hier ist eine kurze Zusammenfassung."],
    "es": ["¡Claro! ¿Qué te gustaría saber?", "Por supuesto. Aquí tienes un resumen breve."],
    "fr": ["Bien sûr ! Que veux-tu savoir ?", "Voici un court résumé."],
    "zh": ["好的，你想了解什么？", "当然，这里是简短的总结。"],
    "hi": ["Haan bilkul, kya jaanna hai?", "Theek hai, yeh raha short summary."],
}
USER_TURN = {
    "en": ["hi", "Can you help me with something?", "thanks, one more thing", "ok"],
    "de": ["Hallo", "Kannst du mir helfen?"], "es": ["Hola", "¿Me ayudas con algo?"],
    "fr": ["Salut", "Tu peux m'aider ?"], "zh": ["你好", "能帮我个忙吗？"], "hi": ["hello", "ek help chahiye"],
}


def codename(rng):
    k = rng.randrange(6, 18)
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(k))


def tool_result(rng):
    return json.dumps(rng.choice([
        {"temperature": rng.randrange(-5, 35), "unit": "C", "conditions": rng.choice(["sunny", "rain", "cloudy"])},
        {"results": [{"title": "Getting started", "url": "https://docs.example.org/start"}], "total": 1},
        {"status": "ok", "items": rng.randrange(0, 40), "next_page": None},
        {"result": rng.randrange(1, 10000)},
    ]))


def pick(table, lang, rng):
    return rng.choice(table.get(lang) or table["en"])


def fill_code(s, rng):
    return s.replace("{code}", codename(rng))


def wrap(text, lang, rng):
    """`text` in one router form with harmless pieces around it."""
    form = rng.randrange(6)
    instr = fill_code(pick(INSTR, lang, rng), rng)
    doc = fill_code(pick(DOCS, lang, rng), rng)
    if form == 0:  # the case as an attachment to a harmless instruction (wire form)
        return f"{instr}\n\n[Attachment 1]\n{text}"
    if form == 1:  # a harmless attachment after the case's message (wire form)
        return f"{text}\n\n[Attachment 1]\n{doc}"
    if form == 2:  # two attachments, the case second
        return f"{instr}\n\n[Attachment 1]\n{doc}\n\n[Attachment 2]\n{text}"
    if form == 3:  # system prompt, then the case (parts joined)
        return f"{pick(SYSTEM, lang, rng)}\n\n{text}"
    if form == 4:  # a short transcript, the case as the last user turn
        return f"{pick(SYSTEM, lang, rng)}\n\n{pick(USER_TURN, lang, rng)}\n\n{pick(ASSISTANT, lang, rng)}\n\n{text}"
    return f"{text}\n\n{tool_result(rng)}"  # a tool result after the case


def harmless_request(lang, rng):
    """A whole router-form request made of harmless pieces only."""
    form = rng.randrange(5)
    instr = fill_code(pick(INSTR, lang, rng), rng)
    doc = fill_code(pick(DOCS, lang, rng), rng)
    system = pick(SYSTEM, lang, rng)
    if form == 0:
        return f"{instr}\n\n[Attachment 1]\n{doc}"
    if form == 1:
        return f"{system}\n\n{instr}\n\n[Attachment 1]\n{doc}"
    if form == 2:
        return f"{system}\n\n{pick(USER_TURN, lang, rng)}\n\n{pick(ASSISTANT, lang, rng)}\n\n{instr}"
    if form == 3:
        return f"{instr}\n\n[Attachment 1]\n{doc}\n\n[Attachment 2]\n{fill_code(pick(DOCS, lang, rng), rng)}"
    return f"{instr}\n\n{tool_result(rng)}"
