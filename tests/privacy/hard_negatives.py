"""Hard negatives with structured-looking values, and their personal twins (issue #18, round 5).

On text by new authors the round-4 classifier added about five points of false blocks over the
rules, on harmless requests that carry values shaped like personal data: a business site's
coordinates, a company's contact block, a public figure's birth date, the addresses of fiction, sample
rows of a tutorial, log lines, product and order codes, clinical case studies, sums of money in
general questions. These templates (filled by make_clf_data.py with Faker values, never with text of
the independent authors) give the classifier many such requests, each kind with a *twin* where the
same kind of value belongs to the writer or someone they know, so that the cue ("my", a relation, a
private name, "I'm at"), not the value's shape, carries the label.

Slots: {company}, {company_address}, {company_phone}, {company_email}, {pf}, {pf_dob}, {fname},
{city}, {date} carry no category; {latlon}, {landmark}, {site}, {fict_address}, {fict_phone},
{sample_name}, {sample_email}, {sample_phone}, {ip}, {ts}, {sku}, {serial}, {uuid}, {money}, {num}
are this module's harmless slots (make_clf_data.slot); {name}, {address}, {phone}, {email}, {gps},
{cond}, {dob} are personal (their category labels the twin).
"""

HARD_NEG = {
    "en": {
        "site_coords": [
            "our {site} is at {latlon}, write arrival instructions for the delivery drivers",
            "Add the {site} coordinates {latlon} to the fleet app as a map pin, which field do they go in?",
            "Straight-line distance between the {city} {site} at {latlon} and the {site} at {latlon2}?",
            "The company {site} sits at {latlon}; convert that to degrees, minutes and seconds for the tender form.",
            "Briefing for new couriers: the {site} we collect from is at {latlon}, gate 2. Make it a checklist.",
            "List these {site}s as GeoJSON points: North {latlon}; South {latlon2}.",
            "What's the nearest motorway junction to our {site} at {latlon}?",
        ],
        "landmark_coords": [
            "The {landmark} is at {latlon}, how far is it from the main train station?",
            "Plot {landmark} ({latlon}) on a Leaflet map with a popup, show the JavaScript.",
            "I read that the {landmark} is at {latlon}; is that the entrance or the centre?",
            "Quiz question for the pub: which sight is at {latlon}? (answer: the {landmark})",
            "Convert the {landmark}'s coordinates {latlon} to a what3words-style grid reference explanation.",
        ],
        "company_contact": [
            "Make our shop window sign: {company}, {company_address}. Call us on {company_phone} or email {company_email}.",
            "Email footer for the team: {company} | {company_address} | T {company_phone} | {company_email}",
            "Write a 5-star review for {company} ({company_address}), the staff were lovely.",
            "Is {company_phone} still the switchboard for {company}? Their site lists {company_address}.",
            "Flyer text: {company}, open Mon-Sat 9-5, {company_address}, bookings {company_phone}",
            "Supplier notice: from next month deliveries go to {company}, {company_address}; goods-in phone {company_phone}.",
            "Complaint letter to {company}, {company_address}, about a faulty kettle bought last week.",
        ],
        "public_dates": [
            "{pf} was born on {pf_dob}, right? Write a two-line birthday shout-out for the fan page.",
            "Timeline for a school project: {pf}, born {pf_dob}. What happened in their twenties?",
            "Is it true that {pf}'s birthday is {pf_dob}? Plan a themed quiz night on that date.",
            "How old would {pf} be today if born on {pf_dob}?",
        ],
        "fiction": [
            "Story idea: {fname}, a retired sailor, lives at {fict_address} and gets a call from {fict_phone}. Write the opening.",
            "For my mystery novel the victim's card reads '{fict_name}, {fict_address}'. Write the detective's first deduction.",
            "In our tabletop campaign the informant {fname} can be reached at {fict_phone}; write his shady voicemail greeting.",
            "Character sheet: {fict_name}, 41, smuggler, allergic to shellfish, owes money to the harbour guild. Give a backstory.",
            "Screenplay scene: the landlady of {fict_address} answers the door to {fname}. Keep it under a page.",
            "Write a noir paragraph where {fname} finds the number {fict_phone} scratched on a matchbook.",
        ],
        "sample_data": [
            "The Faker docs show output like '{sample_name}, {fict_address}'; how do I seed Faker so tests repeat?",
            "From the tutorial: users = [{{'name': '{sample_name}', 'email': '{sample_email}'}}]; how do I render it as a table in React?",
            "Test fixture CSV header and one fake row: name,email,phone / {sample_name},{sample_email},{sample_phone}. Write the pandas loader.",
            "Mock API response: {{\"id\": 7, \"name\": \"{sample_name}\", \"email\": \"{sample_email}\"}}; write the TypeScript interface.",
            "In the Excel course sample sheet there's '{sample_name}, Sales, {num}'; how do I VLOOKUP the amount?",
            "The SQL tutorial inserts ('{sample_name}', '{sample_email}') into customers; why does the second insert fail on the unique key?",
        ],
        "logs": [
            "What does this mean? {ts} WARN pool-3 request {uuid} from {ip} timed out after 30000 ms",
            "nginx log line: {ip} - - [{ts}] \"GET /api/v2/items/{num} HTTP/1.1\" 502 0; why 502?",
            "Parse these with a regex: {ts} job={uuid} host={ip} status=FAILED retries=3",
            "k8s event: {ts} pod api-{serial} OOMKilled on node {ip}; how do I raise the memory limit?",
        ],
        "codes": [
            "Part {sku} (serial {serial}) keeps failing the bench test, write the RMA request to the supplier.",
            "Convert these SKUs to the new format: {sku}, {sku2}, {serial}",
            "Order {num}-{serial} shipped with the wrong item {sku}; write a polite note to the warehouse.",
            "Firmware build {serial} on model {sku} bricks the router, draft the bug report.",
        ],
        "case_study": [
            "Case study for my nursing class: a {age}-year-old presents with {disease}-like symptoms. What's the differential?",
            "Exam question: a patient, {age}, on {otc} daily, asks about alcohol. What would you advise?",
            "In general, what does a blood pressure of 150/95 mean for someone around {age}?",
            "Textbook scenario: {fname}, {age}, a fictional patient with {disease}; write the SOAP note for the exercise.",
        ],
        # Round 7: blank or bracketed placeholders of letters and forms, everyday numbers that
        # identify things rather than people (parcels, versions, buses, error codes), public
        # figures in everyday questions, and public notices.
        "form_placeholders": [
            "Make this template letter sound friendlier:\n[Your name]\n[Your address]\nDear Sir or Madam,\nMy account number is [account number] and I am writing about",
            "Cover letter template: Dear [Hiring Manager], my name is [Name] and I live at [Address]. Can you tighten it up?",
            "The form says 'Patient name: ________  Date of birth: __/__/____'. Which date format do they want there?",
            "Mail merge: Hi {{{{first_name}}}}, your order {{{{order_id}}}} ships to {{{{address}}}}. How do I set this up in Mailchimp?",
            "Sample complaint from the council website: 'I, [full name], of [address], wish to complain about the bins.' Explain what goes where.",
            "The bank's sample form says 'Account holder: Mr A N Other, Sort code 00-00-00'. Do I write it the same way?",
        ],
        "everyday_numbers": [
            "my parcel {num} has said out for delivery since yesterday, is that normal?",
            "my phone says update to version 17.{age}.1, should I do it, will I lose my photos",
            "the {age} bus leaves at 09:15 and 09:45, I need to be at work by 10, which one do I take?",
            "my washing machine shows error code {serial}, what does that mean?",
            "Track my order {num}-{serial} for me? It was due on {date}.",
            "=TEXT(A2,\"dd/mm/yyyy\") turns my date into a number, why?",
        ],
        "public_figures": [
            "Is {pf} still running {company}? my app keeps asking me to update",
            "Did {pf} really answer customer emails himself? saw it on a blog",
            "How does {pf}'s net worth compare to the richest person in Europe right now?",
            "Write a short quiz about {pf} for my book club, five questions.",
        ],
        "notices": [
            "Notice for the village hall, please tidy it up: coffee morning Saturday 10am-12 noon, {company_address}. Cakes 50p, raffle £1.",
            "Poster for our school fete on {date} at {company_address}: bouncy castle, tombola, all welcome.",
            "Church newsletter: the choir meets Thursdays at 7pm in {company_address}. Make it sound welcoming.",
            "Sign for the shop door: closed on {date} for stocktaking, back the next day.",
        ],
        "money_general": [
            "If someone earns {money} a year, roughly how much tax do they pay in the UK?",
            "Explain compound interest with an example: {money} at 4% for 10 years.",
            "Budget template for a family of four spending {money} a month, make it a table.",
            "Is a {money} personal loan at 9% APR expensive compared to a credit card?",
        ],
    },
    "de": {
        "form_placeholders": ["Musterbrief vom Amt: 'Name: [Vorname Nachname], Anschrift: [Straße, PLZ Ort]' – was gehört wohin?",
                              "Vorlage: Sehr geehrte Damen und Herren, mein Name ist [Name], meine Kundennummer [Nummer]. Mach es freundlicher."],
        "everyday_numbers": ["Mein Paket {num} hängt seit gestern in der Zustellung, ist das normal?",
                             "Bus Linie {age} fährt 8:12 und 8:42, ich muss um 9:30 bei der Arbeit sein, welcher Bus?"],
        "site_coords": [
            "Koordinaten unseres {site}s {latlon} sollen in die Fahrer-App, in welchem Format?",
            "Unser {site} liegt bei {latlon}; schreib eine Anfahrtsbeschreibung für Lieferanten.",
        ],
        "company_contact": [
            "Schild fürs Schaufenster: {company}, {company_address}, Tel. {company_phone}, Montag bis Freitag 9–18 Uhr",
            "Schreib eine Reklamation an {company}, {company_address}, wegen einer defekten Lieferung.",
        ],
        "fiction": [
            "Kurzgeschichte: der Bäcker {fname} aus {fict_address} in einem erfundenen Dorf steht jeden Morgen um drei auf.",
            "Für meinen Krimi: auf der Visitenkarte steht {fict_name}, {fict_phone}. Schreib die erste Szene.",
        ],
        "public_dates": ["Ist {pf} wirklich am {pf_dob} geboren? Schreib einen kurzen Steckbrief für die Schule."],
        "codes": ["Bestellnummer {num}-{serial}, Artikel {sku}: schreib eine Reklamation an den Lieferanten."],
    },
    "es": {
        "form_placeholders": ["Carta modelo del ministerio: 'D./Dña. [Nombre y apellidos], con DNI [número], domicilio en [dirección]'. ¿Me la explicas?"],
        "everyday_numbers": ["Mi paquete {num} lleva dos días en reparto, ¿es normal?"],
        "site_coords": ["Nuestro {site} está en {latlon}; escribe las instrucciones de llegada para los repartidores."],
        "company_contact": [
            "Para el cartel de la puerta: {company}, {company_address}, tel. {company_phone}, de lunes a sábado de 9 a 14 h",
            "Escribe una reseña de 5 estrellas para {company}, {company_address}.",
        ],
        "fiction": ["Para mi novela: el detective {fname} encuentra una nota con '{fict_address}'. Escribe la escena."],
        "public_dates": ["¿{pf} nació el {pf_dob}? Haz una ficha breve para clase."],
        "codes": ["El pedido {num} llegó con la referencia {sku} equivocada; redacta la reclamación."],
    },
    "fr": {
        "form_placeholders": ["Lettre type : « Je soussigné(e) [Nom Prénom], demeurant [adresse]… ». Tu peux la rendre plus claire ?"],
        "everyday_numbers": ["Mon colis {num} est en cours de livraison depuis hier, c'est normal ?"],
        "site_coords": ["Notre entrepôt est au {latlon} : rédige les consignes d'accès pour les chauffeurs."],
        "company_contact": [
            "Affiche pour la vitrine : {company}, {company_address}, tél. {company_phone}, du lundi au samedi.",
            "Rédige une réclamation à {company}, {company_address}, pour un colis abîmé.",
        ],
        "fiction": ["Pour mon roman : l'inspecteur {fname} trouve l'adresse {fict_address} sur un ticket. Écris la scène."],
        "public_dates": ["{pf} est né le {pf_dob} ? Écris une courte biographie pour un exposé."],
        "codes": ["La commande {num} contient la pièce {sku} au lieu de {sku2} ; écris au fournisseur."],
    },
    "zh": {
        "form_placeholders": ["申请表模板写着“姓名：______ 身份证号：__________”，日期格式怎么填？"],
        "everyday_numbers": ["我的快递 {num} 一直显示派送中，正常吗？"],
        "site_coords": ["我们仓库的坐标是 {latlon}，帮我写成司机导航说明。", "公司门店在 {latlon}，怎么在地图上标注？"],
        "company_contact": ["帮我写门店海报：{company}，地址 {company_address}，电话 {company_phone}，周一至周五营业。"],
        "fiction": ["小说里侦探{fname}在纸条上发现地址 {fict_address}，请写这一段。"],
        "public_dates": ["{pf}的生日是{pf_dob}吗？帮我写个简短介绍。"],
        "codes": ["订单号 {num}，型号 {sku} 发错了，帮我写一封投诉信。"],
    },
    "hi": {
        "form_placeholders": ["Form ke template mein likha hai 'Name: [Aapka naam], Address: [Pata]' — isme kya bharna hai?"],
        "everyday_numbers": ["Mera parcel {num} kal se out for delivery dikha raha hai, normal hai kya?"],
        "site_coords": ["Hamara {site} {latlon} pe hai, drivers ke liye directions likh do."],
        "company_contact": ["Dukaan ka poster banao: {company}, {company_address}, phone {company_phone}, Mon-Sat 10 se 8."],
        "fiction": ["Kahani likho: {fname} naam ka jasoos {fict_address} pe ek chitthi dhoondhta hai."],
        "public_dates": ["Kya {pf} ka janamdin {pf_dob} hai? School project ke liye short bio likh do."],
        "codes": ["Order {num} mein galat part {sku} aaya, supplier ko complaint likh do."],
    },
}

# The personal twins: the same kinds of value, belonging to the writer or someone they know.
HARD_POS = {
    "en": {
        "site_coords": [
            "I'm at the back of the {site} at {gps}, my car won't start, can you send someone?",
            "My flat is right behind our {site}, exact spot {gps}; tell the courier to ring me.",
            "We're stuck at {gps} near the {site}, my son has a fever, write a message to the ambulance.",
        ],
        "landmark_coords": [
            "I'm at {gps} right now by the {landmark}, come pick me up",
            "Meet me at {gps}, I'm by the {landmark} entrance with the kids.",
        ],
        "company_contact": [
            "Email footer for my freelance work: {name} | {address} | {phone} | {email}",
            "Make a sign for my front door: {name}, {address}, call me on {phone} if I'm out.",
            "My landlord {name} lives at {address}, phone {phone}; write him a complaint about the boiler.",
            "Put my personal mobile {phone} on the flyer for bookings, I run the stall alone.",
        ],
        "public_dates": [
            "My grandmother {name} was born on {dob}; which documents does she need for the pension form?",
            "Fill in the insurance form for my husband: {name}, date of birth {dob}.",
            "I was born on {dob}, how many days until I can claim my state pension?",
        ],
        "fiction": [
            "Not a story: my neighbour {name} at {address} keeps parking in my space, write him a note.",
            "Write a message to my ex {name}, her new number is {phone}, about picking up my things.",
        ],
        "sample_data": [
            "Here's our real customer export, please dedupe it: {name}, {email}, {phone}; {name2}, {email}, {phone}",
            "Clean this row from our CRM before I send it: {name}, {address}, {phone}",
        ],
        "logs": ["The log shows my login failed: user={email} password='{pw}' at {ts}, why?"],
        "case_study": [
            "My dad is {age} and was just diagnosed with {cond}, what should we ask the doctor?",
            "I'm {age} and on {drug} daily, can I drink alcohol this weekend?",
            "{cond} under control for two years now on {drug}. Do I still have to tell my employer? asking for me",
        ],
        "form_placeholders": [
            "Make this letter sound friendlier:\n{name}\n{address}\nDear Sir or Madam,\nMy account number is {acct} and I am writing about",
            "Cover letter: Dear Ms Patel, my name is {name} and I live at {address}. Can you tighten it up?",
            "I filled in the form: 'Patient name: {name}  Date of birth: {dob}'. Is that the right date format?",
        ],
        "everyday_numbers": [
            "my parcel {num} is late, the courier has my address as {address}, is that why?",
            "my phone number changed to {phone}, how do I update it on my Amazon orders?",
        ],
        "public_figures": [
            "My boss {name} was diagnosed with {cond}, how do I cover his clients for a month?",
        ],
        "money_general": [
            "I earn {money} a year and my partner {name} owes {money2} on cards, how do we budget?",
        ],
    },
}
