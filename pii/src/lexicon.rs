//! Keyword lists (regex fragments, all lowercase: they are matched against a lowercased copy of the
//! text, with word-boundary checks) in English, Spanish, German, French, Chinese and Hindi (Latin script).
//!
//! These lists are hand-written from general knowledge of each language; they are not derived from
//! the evaluation corpus. A fragment may end in `[a-zß-ÿœ]*` to match a stem.

/// Words that introduce a phone number.
#[rustfmt::skip]
pub(crate) const PHONE: &[&str] = &[
    r"phone", r"phones", r"telephone", r"tel", r"tél", r"tel\.", r"mobile", r"mob", r"cell", r"cellphone",
    r"call me", r"call (?:us|him|her|them|back|at|on)", r"calling", r"ring me", r"text me", r"reach me",
    r"whatsapp", r"sms", r"fax", r"hotline", r"contact", r"call back", r"emergency contact", r"teléfono",
    r"telefono", r"tlf", r"móvil", r"movil", r"celular", r"llámame", r"llamame", r"llama", r"llamar", r"contacto",
    r"telefon", r"telefonnummer", r"handy", r"handynummer", r"mobilnummer", r"rufnummer", r"ruf", r"anrufen",
    r"erreichbar", r"notfallkontakt", r"téléphone", r"portable", r"appelle", r"appelle-moi", r"rappelle-moi",
    r"joignable", r"numéro de portable", r"电话", r"手机", r"手机号", r"联系", r"致电", r"打给我", r"打我电话", r"微信", r"联系人",
    r"फ़ोन", r"फोन", r"मोबाइल", r"call karna", r"call karo", r"phone karo",
];

/// Generic "number" words (phone context only when nothing else explains the number).
pub(crate) const NUMBER_WORD: &[&str] =
    &[r"number", r"no\.", r"nr\.", r"número", r"numero", r"nummer", r"numéro", r"号码", r"号", r"नंबर"];

/// Payment-card context.
#[rustfmt::skip]
pub(crate) const CARD: &[&str] = &[
    r"card", r"cards", r"credit card", r"debit card", r"visa", r"mastercard", r"master card", r"amex",
    r"american express", r"discover", r"maestro", r"jcb", r"diners", r"unionpay", r"rupay", r"cvv", r"cvc",
    r"expiry", r"exp", r"expires", r"tarjeta", r"tarjetas", r"caducidad", r"karte", r"kreditkarte", r"kartennummer",
    r"girocard", r"ec-karte", r"prüfnummer", r"carte", r"carte bancaire", r"cryptogramme", r"卡", r"卡号", r"信用卡",
    r"银行卡", r"借记卡", r"安全码", r"有效期",
];

/// Documentation / test context that makes a published test number non-sensitive.
#[rustfmt::skip]
pub(crate) const DOC: &[&str] = &[
    r"test", r"tests", r"testing", r"test mode", r"test card", r"sandbox", r"example", r"examples", r"sample",
    r"dummy", r"fake", r"mock", r"docs", r"documentation", r"demo", r"stripe", r"braintree", r"adyen", r"paypal",
    r"qa", r"unit test", r"validator", r"placeholder", r"prueba", r"pruebas", r"de prueba", r"ejemplo",
    r"documentación", r"validador", r"testkarte", r"testmodus", r"testkartennummer", r"beispiel", r"beispiel-iban",
    r"doku", r"dokumentation", r"unit-test", r"exemple", r"essai", r"de test", r"validateur", r"测试", r"示例", r"沙箱",
    r"文档", r"校验", r"样例", r"样表", r"范例", r"范本", r"填写示例", r"template", r"templates", r"mock-up", r"mockup", r"test data", r"dummy data",
    r"guide", r"tutorial", r"readme", r"jwt\.io", r"regex", r"regexp", r"placeholders", r"plantilla", r"modèle",
    r"vorlage", r"muster", r"muster[a-zäöüß]+", r"formularbeispiel", r"模板", r"training slides", r"specimen",
    r"spécimen", r"exemplo", r"国标", r"示例号码",
];

/// Words before a number that say it is not personal (orders, invoices, versions...).
#[rustfmt::skip]
pub(crate) const NOT_PERSONAL_NUMBER: &[&str] = &[
    r"order", r"orders", r"order number", r"order id", r"order no", r"invoice", r"invoices", r"tracking",
    r"tracking number", r"shipment", r"ticket", r"case number", r"reference", r"ref", r"ref\.", r"confirmation",
    r"booking", r"reservation", r"sku", r"part number", r"model", r"serial", r"isbn", r"issn", r"doi", r"version",
    r"build", r"release", r"commit", r"issue", r"pr", r"pull request", r"patent", r"flight", r"pedido", r"factura",
    r"seguimiento", r"referencia", r"localizador", r"compilación", r"versión", r"bestellung", r"bestellnummer",
    r"bestell-nr", r"rechnung", r"rechnungsnummer", r"sendungsnummer", r"auftragsnummer", r"referenz",
    r"kundennummer", r"build-nummer", r"commande", r"facture", r"suivi", r"numéro de suivi", r"référence", r"订单",
    r"订单号", r"快递", r"快递单号", r"单号", r"发票", r"运单", r"版本", r"内部版本",
    // Article and item numbers of catalogues ("Würth Art.-Nr. 0157 50 40").
    r"art\.-nr\.", r"art\. ?nr\.", r"artikelnummer", r"artikel-nr\.", r"artikelnr\.", r"item no\.", r"item number",
    r"item #", r"product code", r"product number", r"réf\. article", r"référence article", r"número de artículo",
    r"货号", r"型号",
    // Lottery draws ("EuroMillions 03 17 25 38 49").
    r"powerball", r"euromillions", r"euro millions", r"mega millions", r"lotto", r"loto", r"lottery", r"lotería",
    r"loteria", r"lottozahlen", r"winning numbers", r"lucky stars", r"numéro chance", r"jackpot", r"彩票", r"双色球",
];

/// Arithmetic context (phone-like math).
#[rustfmt::skip]
pub(crate) const MATH: &[&str] = &[
    r"what is", r"what's", r"compute", r"calculate", r"solve", r"sum", r"product", r"multiply", r"divided",
    r"divide", r"divisible", r"mod", r"modulo", r"minus", r"times", r"equals", r"prime", r"factor", r"factorize",
    r"square root", r"cuánto es", r"cuanto es", r"calcula", r"módulo", r"suma", r"resta", r"berechne", r"was ist",
    r"was ergibt", r"teilbar", r"ergibt", r"combien font", r"calcule", r"divisible par", r"等于", r"计算", r"整除", r"余数",
    r"kitna", r"kitna hoga", r"kitna hota", r"calculate karo", r"×", r"÷", r"\*", r"=",
];

/// US SSN / social-security context.
#[rustfmt::skip]
pub(crate) const SSN: &[&str] = &[
    r"ssn", r"ss#", r"my social", r"social #", r"social no", r"social security", r"social security number", r"soc sec", r"seguro social",
    r"seguridad social", r"sécurité sociale", r"numéro de sécu", r"sozialversicherungsnummer",
    r"sozialversicherung", r"svnr", r"社会保障号", r"社保号",
];

/// Government identity document context (generic).
#[rustfmt::skip]
pub(crate) const GOV_ID: &[&str] = &[
    r"id number", r"id no", r"id card", r"identity card", r"identity number", r"identification number",
    r"national id", r"national insurance", r"ni number", r"nino", r"tax id", r"tin", r"itin", r"sin", r"dni",
    r"nie", r"nif", r"cédula", r"cedula", r"documento de identidad", r"carnet de identidad", r"personalausweis",
    r"personalausweisnummer", r"ausweis", r"ausweisnummer", r"steuer-id", r"steuer-?id",
    r"steueridentifikationsnummer", r"steuer-identifikationsnummer", r"steuernummer", r"idnr", r"carte d'identité",
    r"carte d'identite", r"cni", r"numéro fiscal", r"codice fiscale", r"身份证", r"身份证号", r"身份证号码", r"证件号", r"证件号码",
    r"居民身份证", r"aadhaar", r"aadhar", r"adhaar", r"आधार", r"uid", r"pan", r"pan card", r"pan number", r"voter id",
    r"epic", r"cpf", r"bsn", r"nhs number", r"nhs", r"medicare number", r"health card",
    // Regional national numbers (Poland, Australia, Singapore, Mexico, Korea, Japan, Nigeria,
    // Belgium, Canada).
    r"pesel", r"numer pesel", r"tfn", r"tax file number", r"medicare card", r"medicare no", r"medicare no\.", r"nric",
    r"nric no", r"curp", r"rrn", r"resident registration number", r"주민등록번호", r"マイナンバー", r"個人番号",
    r"my number card", r"nin", r"nin number", r"bvn", r"national identification number", r"registre national",
    r"numéro de registre national", r"numéro national", r"rijksregisternummer", r"social insurance number",
    r"sin number", r"nss", r"número de seguridad social", r"clave de elector",
];

/// Passport context.
#[rustfmt::skip]
pub(crate) const PASSPORT: &[&str] = &[
    r"passport", r"passport no", r"passport number", r"pasaporte", r"número de pasaporte", r"reisepass",
    r"reisepassnummer", r"passnummer", r"pass-nr", r"passeport", r"numéro de passeport", r"护照", r"护照号", r"护照号码",
    r"पासपोर्ट",
];

/// Driver-licence context.
#[rustfmt::skip]
pub(crate) const LICENCE: &[&str] = &[
    r"driver'?s licen[cs]e", r"drivers licen[cs]e", r"driver licen[cs]e", r"driving licen[cs]e",
    r"licen[cs]e number", r"licen[cs]e no", r"dl", r"dl no", r"dl number", r"licencia de conducir",
    r"carnet de conducir", r"carné de conducir", r"permiso de conducir", r"führerschein", r"führerscheinnummer",
    r"permis de conduire", r"numéro de permis", r"驾驶证", r"驾照", r"驾驶证号", r"ड्राइविंग लाइसेंस",
    r"driving licence number", r"license", r"licence", r"my license", r"licencia", r"permis", r"dl#", r"dl #",
];

/// Bank-account context (specific phrases: the number may follow within a sentence).
#[rustfmt::skip]
pub(crate) const ACCOUNT: &[&str] = &[
    r"account number", r"account no", r"account no\.", r"acct", r"acct no", r"a/c", r"a/c no", r"a/c no\.",
    r"checking account", r"savings account", r"bank account", r"bank details", r"current account",
    r"número de cuenta", r"cuenta bancaria", r"cuenta número", r"cuenta corriente", r"nº de cuenta", r"kontonummer",
    r"konto-nr", r"konto nr", r"kto-nr", r"bankverbindung", r"girokonto", r"numéro de compte", r"n° de compte",
    r"compte bancaire", r"compte courant", r"compte n°", r"compte no", r"账号", r"账户", r"银行账号", r"收款账号", r"银行账户",
    r"卡号", r"khata number", r"khata sankhya", r"account mein", r"bank account number", r"kontonr", r"kontonr\.",
    r"kto", r"kto\.-nr\.?", r"kto-nr\.?", r"⑈", r"clabe", r"cuenta clabe", r"compte n", r"rib",
];

/// Ambiguous account words ("compte" also means "counts"): the number must follow within a few bytes.
pub(crate) const ACCOUNT_WEAK: &[&str] = &[r"account", r"cuenta", r"konto", r"compte", r"khata", r"checking", r"acc"];

/// Routing / sort-code context.
#[rustfmt::skip]
pub(crate) const ROUTING: &[&str] = &[
    r"routing", r"routing number", r"routing no", r"aba", r"rtn", r"transit number", r"sort code", r"sort-code",
    r"ifsc", r"blz", r"bankleitzahl", r"⑆", r"clabe", r"bsb",
];

/// Date-of-birth context.
#[rustfmt::skip]
pub(crate) const DOB: &[&str] = &[
    r"date of birth", r"birth date", r"birthdate", r"dob", r"d\.o\.b\.?", r"born", r"born on", r"born in",
    r"my birthday", r"birthday is", r"birthday:", r"fecha de nacimiento", r"nacimiento", r"nací", r"naci",
    r"nacido", r"nacida", r"nacido el", r"nacida el", r"mi cumpleaños", r"f\. nac\.?", r"geburtsdatum", r"geboren",
    r"geboren am", r"geb\.", r"mein geburtstag", r"geburtstag", r"date de naissance", r"né", r"née", r"né le",
    r"née le", r"naissance", r"mon anniversaire", r"出生日期", r"出生于", r"出生", r"生日", r"出生年月", r"出生年月日", r"janam tithi",
    r"janm tithi", r"janamdin", r"janmdin", r"janam", r"janm", r"paida", r"जन्म", r"जन्मतिथि", r"जन्म तिथि",
];

/// Birthday words: a full date with a past year near them is a date of birth ("Birthday list:
/// - Ana Ruiz — 1988-11-03"); a party date is in the current year and is left alone.
#[rustfmt::skip]
pub(crate) const BIRTHDAY: &[&str] = &[
    r"birthday", r"birthdays", r"bday", r"b-day", r"cumpleaños", r"cumple", r"geburtstag", r"geburtstage",
    r"anniversaire", r"anniversaires", r"生日", r"janamdin", r"birthday list",
];

/// Street intersections ("at the corner of 5th Ave and Pine St"): a precise location when the
/// writer says they are there now.
#[rustfmt::skip]
pub(crate) const INTERSECTION: &[&str] = &[
    r"corner of", r"intersection of", r"junction of", r"the lights at", r"crossroads of", r"esquina de",
    r"esquina con", r"cruce de", r"coin de", r"au coin", r"angle de", r"carrefour", r"ecke", r"kreuzung", r"chowk",
    r"路口", r"十字路口", r"交叉口",
];

/// The writer is at a place now.
#[rustfmt::skip]
pub(crate) const PRESENT: &[&str] = &[
    r"right now", r"rn", r"now", r"i'm at", r"i am at", r"im at", r"we're at", r"we are at", r"i'm stood",
    r"i'm sat", r"stood at", r"sat at", r"standing at", r"waiting at", r"stuck at", r"meet me", r"come get me",
    r"pick me up", r"come to", r"ahora mismo", r"ahora", r"estoy en", r"estamos en", r"ven a", r"là maintenant",
    r"maintenant", r"je suis", r"on est", r"rejoins-moi", r"rejoindre", r"gerade", r"jetzt", r"ich bin", r"ich stehe",
    r"wir sind", r"hol mich", r"abhi", r"yahan", r"现在", r"我在",
];

/// Location context for coordinates.
#[rustfmt::skip]
pub(crate) const LOCATION: &[&str] = &[
    r"lat", r"lng", r"lon", r"long", r"latitude", r"longitude", r"coordinates", r"coords", r"gps", r"location",
    r"located", r"position", r"i'm at", r"i am at", r"meet me", r"here", r"ubicación", r"coordenadas", r"posición",
    r"estoy en", r"standort", r"koordinaten", r"bin gerade", r"coordonnées", r"je suis à", r"坐标", r"位置", r"定位",
    r"经纬度", r"yahan", r"abhi",
];

/// Math/science context that makes a decimal pair not a coordinate.
#[rustfmt::skip]
pub(crate) const NOT_COORD: &[&str] = &[
    r"mean", r"average", r"sum", r"compute", r"calculate", r"matrix", r"vector", r"pi", r"π", r"euler", r"constant",
    r"ratio", r"weights", r"loss", r"accuracy", r"precision", r"recall", r"std", r"variance",
];

/// Address context.
#[rustfmt::skip]
pub(crate) const ADDRESS: &[&str] = &[
    r"address", r"addr", r"live at", r"lives at", r"living at", r"ship to", r"deliver to", r"send to",
    r"pick me up at", r"dirección", r"direccion", r"domicilio", r"vivo en", r"envía a", r"adresse", r"anschrift",
    r"wohne", r"wohnt", r"liefere an", r"habite", r"domicile", r"livre à", r"地址", r"住在", r"住址", r"寄到", r"pata",
    r"rehta hoon", r"rehti hoon", r"पता",
];

/// Street-type words in the languages covered (used after a house number or before it).
pub(crate) const STREET_EN: &str = r"(?:Street|St|Avenue|Ave|Av|Road|Rd|Lane|Ln|Boulevard|Blvd|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Crescent|Cres|Close|Mews|Grove|Gardens|Gdns|Row|Hill|Hills|Park|Loop|Ridge|Route|Pike|Plaza|Alley|Walk|Crossing|Xing|Point|Pt|Heights|Hts|Junction|Jct|Knoll|Landing|Manor|Meadow|Meadows|Mill|Mills|Mission|Orchard|Pass|Path|Pines|Port|Prairie|Ranch|Rapids|Rest|Run|Shoal|Shoals|Shore|Shores|Spring|Springs|Spur|Station|Stravenue|Stream|Summit|Throughway|Trace|Track|Trafficway|Tunnel|Turnpike|Union|Unions|Valley|Valleys|Via|View|Views|Village|Villages|Ville|Vista|Wall|Well|Wells|Bypass|Camp|Canyon|Cape|Causeway|Center|Centre|Club|Common|Corner|Corners|Course|Cove|Creek|Creeks|Crest|Dale|Dam|Divide|Estate|Estates|Expressway|Extension|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Forest|Forge|Fork|Forks|Fort|Freeway|Garden|Gateway|Glen|Green|Greens|Harbor|Harbour|Haven|Island|Isle|Key|Keys|Lake|Lakes|Light|Lights|Lock|Locks|Lodge|Mall|Motorway|Mount|Mountain|Neck|Oval|Overpass|Pine|Plain|Plains|Radial|Ramp|Roads|Skyway|Squares|Streets|Underpass|Bridge|Brook|Brooks|Burg|Burgs|Bluff|Bluffs|Bottom|Branch|Bend|Beach|Arcade|Anex|Annex|Chase|Drives|Glens|Grove|Groves|Harbors|Hollow|Inlet|Isles|Junctions|Marsh|Mountains|Parks|Parkways|Ports|Ridges|Rue|Lane|Marg|Nagar|Chowk|Colony|Gali|Enclave|Sector|Zila|Ganj|Bazar|Bazaar|Puram|Peth|Wadi|Vihar)\.?";

/// US state (and military) postal abbreviations.
pub(crate) const US_STATES: &str = r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|GU|VI|AS|MP|AA|AE|AP)";

/// Spanish street types.
pub(crate) const STREET_ES: &str = r"(?:Calle|C/|C\.|Avenida|Avda\.?|Av\.|Paseo|Pº|Plaza|Pza\.?|Camino|Carretera|Ctra\.?|Ronda|Travesía|Travesia|Callejón|Callejon|Cañada|Glorieta|Pasaje|Pasadizo|Urbanización|Urb\.|Vía|Via|Vial|Rambla|Alameda|Acceso|Cuesta|Bajada|Carrera|Sector|Partida|Rincón|Rua|Polígono|Barrio|Plazuela|Senda|Subida|Muelle|Puerta)";

/// German street suffixes / words.
pub(crate) const STREET_DE: &str = r"(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad|graben|stieg|twiete|zeile|anger|höhe|promenade)";

/// French street types.
pub(crate) const STREET_FR: &str = r"(?:rue|avenue|av\.|boulevard|chemin|allée|allee|impasse|place (?:de|du|des|d')|quai|route (?:de|du|des|d')|passage|voie|rond-point|faubourg|chaussée|sentier|esplanade|parvis|ruelle|hameau|lieu-dit|résidence|cité|montée|promenade)";

/// Conditions, symptoms, treatments and care words (health information when about a person).
#[rustfmt::skip]
pub(crate) const HEALTH: &[&str] = &[
    // English
    r"diabet[a-zß-ÿœ]*", r"hiv", r"aids", r"cancer[a-zß-ÿœ]*", r"tumou?r[a-zß-ÿœ]*", r"leuka?emia", r"lymphoma",
    r"chemo[a-zß-ÿœ]*", r"radiotherapy", r"depress[a-zß-ÿœ]*", r"anxiety", r"panic attacks?", r"bipolar",
    r"schizo[a-zß-ÿœ]*", r"psychosis", r"adhd", r"autis[a-zß-ÿœ]*", r"ptsd", r"ocd", r"epilep[a-zß-ÿœ]*",
    r"seizures?", r"hypertension", r"high blood pressure", r"blood pressure", r"blood sugar", r"cholesterol",
    r"asthma", r"copd", r"crohn'?s?", r"colitis", r"hepatitis", r"cirrhosis", r"sclerosis", r"alzheimer'?s?",
    r"dementia", r"parkinson'?s?", r"arthritis", r"lupus", r"covid(?:-19)?", r"coronavirus", r"flu", r"influenza",
    r"pneumonia", r"tuberculosis", r"chlamydia", r"gonorrh?o?ea", r"syphilis", r"herpes", r"hpv", r"stds",
    r"pregnan[a-zß-ÿœ]*", r"miscarriage", r"abortion", r"ivf", r"infertil[a-zß-ÿœ]*", r"eating disorder",
    r"anorexia", r"bulimia", r"addict[a-zß-ÿœ]*", r"alcoholi[a-zß-ÿœ]*", r"overdose", r"suicid[a-zß-ÿœ]*",
    r"self-harm", r"rehab", r"stroke", r"heart attack", r"heart disease", r"migraines?", r"insomnia", r"thyroid",
    r"kidney stones?", r"kidney disease", r"dialysis", r"transplant", r"surgery", r"biopsy", r"diagnosed",
    r"diagnosis", r"prescribed", r"prescription (?:for|of)", r"medication", r"medicine", r"meds", r"pills?", r"dose", r"dosage",
    r"therap[a-zß-ÿœ]*", r"psychiatrist", r"hospitali[sz]ed", r"in hospital", r"in the hospital",
    r"admitted (?:with|to)", r"discharge", r"symptoms?", r"tested positive", r"positive for", r"sick", r"illness",
    r"(?:has|have|had|got|caught) a cold", r"disease", r"disorder", r"infection", r"injur[a-zß-ÿœ]*",
    r"fracture[a-zß-ÿœ]*", r"pain", r"headaches?", r"dizzy", r"dizziness", r"nausea", r"fever", r"allerg[a-zß-ÿœ]*",
    r"metformin[a-zß-ÿœ]*", r"sertralin[a-zß-ÿœ]*", r"lithium", r"insulin[a-zß-ÿœ]*", r"methotrexat[a-zß-ÿœ]*",
    r"levothyrox[a-zß-ÿœ]*", r"fluoxetin[a-zß-ÿœ]*", r"predniso[a-zß-ÿœ]*", r"olanzapin[a-zß-ÿœ]*",
    r"antidepressants?", r"ssris?", r"opioids?", r"methadone", r"thyronorm", r"l-thyroxin", r"pcod", r"pcos",
    r"tb (?:hai|ho|ki|ka|se)", r"jaundice", r"dengue", r"malaria", r"typhoid", r"concussion", r"cardiac",
    r"hiv-positive", r"x-ray", r"mri", r"ct scan", r"blood test", r"obesity", r"cough\w*", r"vaccinated",
    r"unvaccinated", r"chemotherapy", r"miscarried", r"panic disorder",
    // Families of conditions and drugs by their endings (tonsillitis, amoxicillin, albuterol...).
    r"[a-z]{3,}itis", r"[a-z]{2,}cillin[a-z]*", r"[a-z]{2,}mycin", r"[a-z]{3,}[aio]pril", r"[a-z]{2,}olol",
    r"[a-z]{2,}statin", r"[a-z]{2,}prazole?", r"[a-z]{2,}sartan", r"[a-z]{2,}oxetine?", r"[a-z]{2,}azepam",
    r"[a-z]{2,}triptan", r"[a-z]{2,}terol", r"[a-z]{2,}phenidat[a-z]*", r"[a-z]{2,}ectomy", r"(?:hypo|hyper)gly[ck]a?emia", r"septic(?:a)?emia",
    r"[a-z]{2,}gliptin", r"[a-z]{2,}glutide",
    r"ibuprofen", r"paracetamol", r"acetaminophen", r"aspirin", r"tylenol", r"advil", r"warfarin", r"marcumar",
    r"ritalin", r"adderall", r"xanax", r"valium", r"prozac", r"zoloft", r"lexapro", r"wellbutrin", r"ozempic",
    r"wegovy", r"viagra", r"epipen", r"inhalers?", r"nebuli[sz]er", r"flare-ups?", r"a temperature",
    r"temperature of", r"pediatrician", r"paediatrician", r"gp", r"physio", r"speech delay", r"disabilit[a-z]*",
    r"disabled", r"wheelchair", r"in remission", r"remission", r"relapse[a-z]*",
    r"dyslexi[a-z]*", r"dyspraxi[a-z]*", r"tourette'?s?", r"down syndrome", r"cerebral palsy", r"sleep apnea",
    r"eczema", r"psoriasis", r"endometriosis", r"gout", r"anaemia", r"anemia", r"angina", r"arrhythmia",
    r"pacemaker", r"hearing aids?", r"mental health", r"lamotrigin[a-z]*", r"amlodipin[a-z]*", r"ejection fraction",
    r"sugar fasting", r"fasting sugar", r"sugar level", r"glycomet", r"deaf", r"deafness", r"hard of hearing", r"cochlear implants?",
    r"legally blind", r"visually impaired", r"partially sighted", r"nodules?", r"lesions?", r"lab results",
    r"blood work", r"bloodwork", r"(?:ng|mg|mmol|µmol|umol|mcg|µg|iu|miu|u)/(?:ml|dl|l)", r"oncolog[a-z]*",
    r"urolog[a-z]*", r"cardiolog[a-z]*", r"neurolog[a-z]*", r"gastroenterolog[a-z]*", r"dermatolog[a-z]*",
    r"endocrinolog[a-z]*", r"rheumatolog[a-z]*", r"gyn(?:a)?ecolog[a-z]*", r"obstetrician", r"ha?ematolog[a-z]*",
    r"nephrolog[a-z]*", r"pulmonolog[a-z]*", r"malignant", r"metasta[a-z]*",
    // Round 7: burn-out and sick notes, in the words of employers and colleagues.
    r"burn-?out", r"burnt out", r"sick note", r"fit note", r"sick leave", r"off sick", r"signed off sick", r"stress leave",
    r"arrêt maladie", r"arrêt de travail", r"en arrêt", r"baja médica", r"de baja", r"krankschreibung",
    // Spanish
    r"diabetes", r"vih", r"sida", r"cáncer", r"depresión", r"ansiedad", r"trastorno[a-zß-ÿœ]*", r"epilepsia",
    r"hipertensión", r"tensión alta", r"esclerosis", r"alzhéimer", r"esquizofrenia", r"artritis",
    r"embarazad[a-zß-ÿœ]*", r"diagnostic[a-zß-ÿœ]*", r"recetó", r"recetad[oa]", r"medicamento[a-zß-ÿœ]*",
    r"pastillas?", r"tratamiento (?:para|contra|médico)", r"en tratamiento", r"terapia", r"hospital",
    r"ingresad[a-zß-ÿœ]*", r"cirugía", r"operación", r"síntomas?", r"enferm[a-zß-ÿœ]*", r"dio positivo",
    r"positivo en", r"mareo[a-zß-ÿœ]*", r"dolor", r"alergi[a-zß-ÿœ]*", r"gripe", r"metformina", r"sertralina",
    r"litio", r"insulina", r"metotrexato", r"levotiroxina", r"fluoxetina", r"prednisona", r"olanzapina", r"infarto",
    r"ictus", r"fiebre", r"asma", r"migraña", r"tumor", r"quimio[a-zß-ÿœ]*", r"operad[oa]", r"demencia",
    r"tdah", r"autismo", r"metilfenidato", r"ibuprofeno", r"paracetamol", r"pediatra", r"psiquiatra",
    r"psicólog[oa]", r"discapacidad", r"aborto espontáneo", r"perdí (?:el|al) bebé", r"sord[oa]", r"implante coclear", r"biopsia", r"nódulos?", r"oncólog[oa]",
    r"urólog[oa]", r"cardiólog[oa]", r"análisis de sangre", r"maligno", r"metástasis", r"[a-zß-ÿœ]{3,}itis", r"inhalador", r"ansiolítico[s]?", r"antidepresivo[s]?",
    // German
    r"krebs", r"brustkrebs", r"prostatakrebs", r"depression[a-zß-ÿœ]*", r"angststörung", r"bipolare", r"epilepsie",
    r"bluthochdruck", r"blutdruck", r"multiple sklerose", r"[a-zß-ÿœ]*sklerose", r"alzheimer", r"schizophrenie",
    r"rheuma", r"schwanger[a-zß-ÿœ]*", r"(?:die|eine|meine|seine|ihre|der) diagnose", r"diagnostiziert",
    r"verschrieben", r"medikament[a-zß-ÿœ]*", r"tabletten", r"behandlung", r"therapie", r"krankenhaus", r"klinik",
    r"symptome?", r"krank[a-zß-ÿœ]*", r"positiv getestet", r"positiv auf", r"schwindel[a-zß-ÿœ]*",
    r"schmerz[a-zß-ÿœ]*", r"allergie", r"morbus", r"hepatitis", r"l-thyroxin", r"sertralin", r"fluoxetin",
    r"prednisolon", r"olanzapin", r"methotrexat", r"herzinfarkt", r"schlaganfall", r"demenz", r"grippe", r"fieber",
    r"erkältet", r"erkältung", r"migräne", r"chemotherapie", r"operiert", r"depressiv", r"asthma", r"husten",
    r"[a-zß-ÿœ]*schmerz[a-zß-ÿœ]*", r"[a-zß-ÿœ]*krebs", r"[a-zß-ÿœ]*krankheit", r"[a-zß-ÿœ]*entzündung",
    r"[a-zß-ÿœ]*infektion", r"[a-zß-ÿœ]*tabletten", r"hausarzt", r"hausärztin", r"kinderarzt",
    r"ibuprofen", r"marcumar", r"behinderung", r"pflegegrad", r"adhs", r"autismus", r"reha", r"gehörlos",
    r"schwerhörig", r"cochlea-implantat", r"fehlgeburt", r"biopsie", r"onkologe", r"onkologin", r"urologe", r"kardiologe",
    r"blutwerte", r"bösartig", r"metastasen",
    // French
    r"diabète", r"diabete", r"dépression", r"anxieux", r"anxiété",
    r"trouble (?:bipolaire|anxieux|alimentaire|obsessionnel|du|de la|psychique|mental)", r"épilepsie",
    r"hypertension", r"sclérose", r"schizophrénie", r"enceinte", r"diagnostiqu[a-zß-ÿœ]*", r"prescrit[a-zß-ÿœ]*",
    r"ordonnance", r"médicament[a-zß-ÿœ]*", r"traitement (?:pour|contre|médical)", r"sous traitement", r"thérapie",
    r"hôpital", r"hospitalisé[a-zß-ÿœ]*", r"chirurgie", r"symptômes?", r"malad[a-zß-ÿœ]*",
    r"testée? positi[a-zß-ÿœ]*", r"positif à", r"vertiges?", r"douleur[a-zß-ÿœ]*", r"allergi[a-zß-ÿœ]*",
    r"hépatite", r"metformine", r"lévothyroxine", r"fluoxétine", r"méthotrexate", r"crise cardiaque", r"infarctus",
    r"avc", r"fièvre", r"grippe", r"asthme", r"tumeur", r"chimio", r"opérée?", r"démence", r"toux",
    r"tdah", r"autisme", r"handicap", r"fausse[ \-]couche", r"avortement", r"ivg", r"sourde?", r"malentendant[a-z]*", r"implant cochléaire", r"biopsie",
    r"nodules?", r"oncologue", r"urologue", r"cardiologue", r"prise de sang", r"maligne?", r"métastases?", r"pédiatre", r"psychiatre", r"doliprane", r"antidépresseurs?", r"ventoline",
    // Chinese
    r"糖尿病", r"艾滋", r"癌", r"肿瘤", r"化疗", r"抑郁", r"焦虑", r"双相", r"精神分裂", r"癫痫", r"高血压", r"血压", r"血糖", r"哮喘", r"克罗恩",
    r"肝炎", r"丙肝", r"乙肝", r"硬化", r"阿尔茨海默", r"痴呆", r"帕金森", r"关节炎", r"新冠", r"肺炎", r"结核", r"怀孕", r"流产", r"不孕", r"诊断",
    r"确诊", r"药", r"治疗", r"住院", r"手术", r"医院", r"症状", r"病", r"头晕", r"疼", r"痛", r"过敏", r"阳性", r"二甲双胍", r"舍曲林", r"胰岛素",
    r"甲氨蝶呤", r"甲状腺", r"氟西汀", r"泼尼松", r"奥氮平", r"心理医生", r"看医生", r"心脏病", r"中风", r"发烧", r"感冒", r"咳嗽", r"过敏",
    r"自闭症", r"多动症", r"服用", r"氨氯地平", r"耳聋", r"失聪", r"助听器", r"人工耳蜗", r"活检", r"结节", r"化验", r"恶性",
    // Hindi (Latin script)
    r"sugar (?:hai|ki|ka|ho)", r"bimari", r"bimaar", r"beemar[a-zß-ÿœ]*", r"bukhar", r"dard", r"dawai", r"dawa",
    r"ilaj", r"ilaaj", r"chakkar", r"garbh[a-zß-ÿœ]*", r"diagnose hua", r"diagnose hui", r"doctor ne",
    r"bp (?:ki|ka|hai|high|low)", r"davai", r"hospital mein", r"operation (?:hai|hua|hoga|tha)", r"ka operation",
    r"khansi", r"zukaam", r"sugar ki bimari",
];

/// First-person pronouns and first-person verb forms (ignored in a meta context: "I'm writing an
/// article about diabetes").
#[rustfmt::skip]
pub(crate) const FIRST_PERSON: &[&str] = &[
    r"i", r"i'm", r"i've", r"i'd", r"i'll", r"me", r"myself", r"yo", r"tengo", r"estoy", r"padezco", r"sufro",
    r"tomo", r"me", r"conmigo", r"nací", r"ich", r"mich", r"mir", r"bei mir", r"je", r"j'", r"moi", r"m'", r"me",
    r"我", r"mujhe", r"mujhko", r"maine", r"humein", r"hab", r"habe", r"j'ai", r"je suis",
];

/// Third-person pronouns: a health sentence speaks of the person named or related in the
/// sentence before ("My son Ethan has an IEP meeting. He was diagnosed with autism").
#[rustfmt::skip]
pub(crate) const THIRD_PERSON: &[&str] = &[
    r"he", r"she", r"his", r"her", r"him", r"he's", r"she's", r"hes", r"shes", r"er", r"ihm", r"seine", r"seinen",
    r"seinem", r"seiner", r"il", r"elle", r"lui", r"él", r"ella", r"他", r"她", r"uska", r"uski", r"usko", r"unka",
    r"unki", r"woh",
];

/// First-person possessives ("my doctor", "mi médico", "meine Tabletten", "我的"): count even in a
/// meta context. German "mein" and Hinglish "main" are handled separately (ambiguous words).
#[rustfmt::skip]
pub(crate) const POSSESSIVE: &[&str] = &[
    r"my", r"mine", r"our", r"mi", r"mis", r"nuestr[oa]s?", r"meine", r"meinen", r"meinem", r"meiner", r"meines",
    r"unser[a-zß-ÿœ]*", r"mon", r"ma", r"notre", r"nos", r"我的", r"mera", r"meri", r"mere", r"hamara", r"hamari",
];

/// Hindi-Latin first person "main" (= I) only counts next to these Hinglish function words.
#[rustfmt::skip]
pub(crate) const HINGLISH_VERB: &[&str] = &[
    r"hoon", r"hun", r"hu", r"tha", r"thi", r"raha", r"rahi", r"rahe", r"sakta", r"sakti", r"karu", r"karun",
    r"karta", r"karti", r"gaya", r"gayi", r"leta", r"leti", r"hai", r"hain",
];

/// Meta/professional context: first person here does not disclose the writer's own health.
#[rustfmt::skip]
pub(crate) const META: &[&str] = &[
    r"i'm writing", r"i am writing", r"writing a", r"blog post", r"article", r"essay", r"presentation", r"homework",
    r"i'm studying", r"i am studying", r"nursing student", r"medical student", r"i'm a nurse", r"i am a nurse",
    r"i'm a doctor", r"i am a doctor", r"research", r"quiz", r"lecture", r"course", r"estoy escribiendo",
    r"artículo", r"ich schreibe", r"artikel", r"j'écris", r"j'ecris", r"我在写", r"文章", r"main likh raha",
    r"main likh rahi",
];

/// A clinical vignette or exercise ("case study for my nursing class: a 27-year-old presents
/// with..."): its patient is nobody, though "my class" is first person.
#[rustfmt::skip]
pub(crate) const VIGNETTE: &[&str] = &[
    r"case study", r"case studies", r"case vignette", r"vignette", r"clinical scenario", r"exam question",
    r"practice question", r"textbook", r"presents with", r"presenting with", r"presented with", r"usmle", r"osce",
    r"fallbeispiel", r"fallstudie", r"caso clínico", r"caso clinico", r"cas clinique", r"étude de cas", r"病例分析",
    r"案例分析",
];

/// Relation nouns ("my colleague", "mi madre", "meine Frau", "我妈妈") naming a specific person.
#[rustfmt::skip]
pub(crate) const RELATION: &[&str] = &[

    r"(?:my|our) (?:mother|father|mom|mum|dad|wife|husband|son|daughter|brother|sister|friend|colleague|coworker|co-worker|boss|manager|patient|client|partner|grandma|grandmother|grandpa|grandfather|uncle|aunt|cousin|neighbou?r|child|kid|baby|girlfriend|boyfriend|roommate|flatmate|employee|student|business partner|co-?founder|assistant|apprentice|intern|staff member|team member|fiancée?|nephew|niece|stepson|stepdaughter|stepmother|stepfather|stepmom|stepdad|ex|ex-wife|ex-husband|landlord|landlady|tenant|nanny|babysitter|childminder|carer|caregiver|mentee|teenager|toddler|twins?|(?:mother|father|brother|sister|son|daughter)-in-law|grandson|granddaughter|godson|goddaughter)",
    r"(?:mi|mis|nuestr[oa]) (?:soci[oa]|emplead[oa]|padre|mamá|mama|papá|papa|esposa|esposo|marido|mujer|hij[oa]|herman[oa]|amig[oa]|compañer[oa]|jef[ea]|paciente|pareja|abuel[oa]|tí[oa]|prim[oa]|vecin[oa]|novi[oa]|sobrin[oa]|suegr[oa])",
    r"(?:mein|meine|meiner|meinem|meinen|unser|unsere) (?:mitarbeiter|mitarbeiterin|geschäftspartner|geschäftspartnerin|azubi|vater|mama|papa|frau|mann|sohn|tochter|bruder|schwester|freund|freundin|kollege|kollegin|chef|chefin|patient|patientin|partner|partnerin|oma|opa|onkel|tante|cousin|cousine|nachbar|nachbarin|kind|enkel|enkelin|neffe|nichte)",
    r"(?:mon|ma|mes|notre) (?:associé|associée|salarié|salariée|employé|employée|stagiaire|apprenti|apprentie|père|maman|papa|femme|mari|fils|fille|frère|sœur|soeur|ami|amie|collègue|patron|patronne|patient|patiente|conjoint|conjointe|grand-mère|grand-père|oncle|tante|cousin|cousine|voisin|voisine|enfant|copain|copine|neveu|nièce)",
    r"我(?:的)?(?:妈妈|爸爸|母亲|父亲|妻子|老婆|丈夫|老公|儿子|女儿|哥哥|姐姐|弟弟|妹妹|朋友|同事|老板|病人|患者|奶奶|爷爷|外婆|外公|邻居|孩子|男朋友|女朋友)",
    r"(?:meri|mera|mere|hamari|hamara) (?:maa|mummy|mom|papa|pitaji|biwi|patni|pati|beta|beti|bhai|behen|bahan|dost|colleague|boss|dadi|dada|nani|nana|chacha|chachi|mama|mami|padosi|bachcha|bachchi|saheli|sister|brother|wife|husband)",
    // Family words that stand for "my ..." without it ("Husband's CT scan", "mummy ka sugar").
    r"(?:husband|wife|hubby|mom|mum|dad|mother|father|grandma|grandpa|son|daughter)'s",
    r"(?:my|our) (?:gf|bf|bff|bestie|missus|hubby|wifey|mil|fil)",
    r"(?:mummy|mumma|mummyji|papa|papaji|pitaji|maa|dadi|dada|nani|nana|bhaiya|didi) (?:ka|ki|ke|ko|ne)",
];

/// Words that label the next words as a person's name.
#[rustfmt::skip]
pub(crate) const NAME_LABEL: &[&str] = &[
    r"my name is", r"name is", r"name:", r"full name", r"i'm", r"i am", r"this is", r"patient", r"patient:",
    r"me llamo", r"mi nombre es", r"nombre:", r"nombre", r"soy", r"paciente", r"ich heiße", r"ich heisse",
    r"mein name ist", r"ich bin", r"patientin", r"je m'appelle", r"mon nom est", r"nom :", r"nom:", r"je suis",
    r"mera naam", r"naam:", r"naam", r"main", r"mareez",
];

/// Self-identification: "my name is X" discloses the writer's identity on its own.
#[rustfmt::skip]
pub(crate) const SELF_ID: &[&str] = &[
    r"my name is", r"full name", r"name:", r"me llamo", r"mi nombre es", r"nombre:", r"ich heiße", r"ich heisse",
    r"mein name ist", r"name ist", r"je m'appelle", r"mon nom est", r"nom :", r"nom:", r"mera naam", r"naam:",
    r"我叫", r"我的名字是", r"姓名",
];

/// Honorifics preceding a name.
pub(crate) const HONORIFIC: &str = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Sr|Sra|Srta|Don|Doña|Dña|Herr|Frau|Hr|Fr|M|Mme|Mlle|Me|Shri|Sri|Smt|Shrimati|Kumari|Ing|Dipl\.-Ing)\.?";

/// Han name suffixes / honorifics and the particles that follow a name.
/// (Matched on normalized text: full-width punctuation is ASCII there.)
#[rustfmt::skip]
pub(crate) const HAN_NAME_FOLLOW: &[&str] = &[
    "的", ",", "(", "今年", "先生", "女士", "小姐", "老师", "得了", "患有", "是", "住在", "在", "出生", "岁", ":", "、", "有", "确诊", "被",
];

/// Han name preceding words.
#[rustfmt::skip]
pub(crate) const HAN_NAME_PRECEDE: &[&str] = &[
    "我叫", "我是", "姓名:", "姓名", "名字是", "名字:", "同事", "朋友", "患者", "病人", "发给", "联系人:", "联系人", "寄到", "给", "经理", "老板",
];

/// Attributes that make a named private person's data sensitive (age, residence, income, status).
#[rustfmt::skip]
pub(crate) const PERSON_ATTR: &[&str] = &[
    r"\d{1,3} years? old", r"\d{1,3}-year-old", r"aged? \d{1,3}", r"\d{1,3} yrs?", r"\d{1,3} y/o", r"\d{1,3} años",
    r"edad", r"\d{1,3} jahre alt", r"\d{1,3} jahre", r"\d{1,3}-jährig[a-zß-ÿœ]*", r"alter", r"\d{1,3} ans",
    r"âgée? de", r"\d{1,3}岁", r"\d{1,3} saal", r"\d{1,3} sal", r"lives in", r"living in", r"lives at", r"vive en",
    r"wohnt in", r"wohnt", r"habite", r"住在", r"rehte", r"rehta", r"rehti", r"earns", r"salary", r"income",
    r"makes \$", r"gana", r"sueldo", r"salario", r"verdient", r"gehalt", r"einkommen", r"gagne", r"salaire",
    r"revenu", r"年薪", r"月薪", r"工资", r"收入", r"kamate", r"kamata", r"kamati", r"tankhwah", r"divorced", r"married",
    r"widowed", r"divorciad[oa]", r"casad[oa]", r"viud[oa]", r"geschieden", r"verheiratet", r"verwitwet",
    r"divorcée?", r"mariée?", r"veuve?", r"离异", r"离婚", r"已婚", r"works at", r"works for", r"trabaja en",
    r"arbeitet bei", r"travaille chez", r"工作", r"kaam karti", r"kaam karta", r"kaam karte", r"criminal record",
    r"convicted", r"arrested", r"gay", r"lesbian", r"bisexual", r"transgender",
    r"take-home", r"take home", r"brings home", r"owes?", r"owed", r"debts?", r"in debt", r"loans?", r"mortgage",
    r"credit score", r"bankrupt[a-z]*", r"net worth", r"paycheck", r"payslip", r"deuda[s]?", r"debe", r"debo",
    r"hipoteca", r"préstamo", r"nómina", r"schulden", r"kredit", r"gehaltsabrechnung", r"dettes?", r"prêt", r"emprunt",
    r"karz", r"karza", r"udhaar", r"欠", r"贷款", r"负债", r"债",
];

/// Words that are capitalized but are not names (sentence starters, places, organisations...).
#[rustfmt::skip]
pub(crate) const NOT_NAME: &[&str] = &[
    "the", "a", "an", "i", "my", "our", "your", "his", "her", "this", "that", "what", "when", "where", "who", "why",
    "how", "which", "please", "hi", "hello", "dear", "thanks", "can", "could", "would", "should", "is", "are",
    "was", "new", "york", "los", "angeles", "san", "united", "states", "kingdom", "north", "south", "east", "west",
    "street", "avenue", "road", "hospital", "university", "clinic", "institute", "center", "centre", "medical",
    "library", "public", "museum", "building", "marketplace", "station", "airport", "college", "church",
    "cathedral", "hotel", "mall", "social", "security", "services", "department", "council", "ministry",
    "gallery", "theatre", "theater", "stadium", "biblioteca", "nacional", "museo", "bibliothek", "bibliothèque",
    "health", "bank", "group", "inc", "llc", "ltd", "gmbh", "corp", "company", "s.a.", "sa", "ag", "monday",
    "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march", "april",
    "may", "june", "july", "august", "september", "october", "november", "december", "google", "github", "stripe",
    "slack", "aws", "amazon", "microsoft", "apple", "chrome", "windows", "python", "rust", "java", "javascript",
    "visa", "mastercard", "iban", "ssn", "dni", "nie", "dob", "patient", "name", "email", "phone", "mobile",
    "contact", "emergency", "emergency contact", "bank details", "account", "el", "la", "los", "las", "mi", "tu",
    "su", "hola", "nombre", "fecha", "calle", "avenida", "plaza", "der", "die", "das", "ein", "eine", "mein",
    "meine", "hallo", "herr", "frau", "straße", "name:", "le", "les", "un", "une", "mon", "ma", "bonjour", "rue",
    "nom", "mera", "meri", "naam", "type", "typ", "morbus", "covid", "diabetes", "hiv", "crohn", "alzheimer",
    "parkinson", "dr", "mr", "mrs", "ms", "prof", "tower", "museum", "palace", "cathedral", "airport", "station",
    "church", "castle", "temple", "stadium", "hotel", "restaurant", "cafe", "café", "mall", "school", "college",
    "library", "river", "lake", "mount", "island", "bridge", "gate", "square", "plaza", "welche", "welcher",
    "welches", "welchen", "welchem",
];

/// Fiction / creative-writing context: names there are characters, not people.
#[rustfmt::skip]
pub(crate) const FICTION: &[&str] = &[
    r"story", r"novel", r"fictional", r"character", r"characters", r"poem", r"screenplay", r"script", r"roleplay",
    r"role-play", r"imagine", r"fairy tale", r"short story", r"plot", r"cuento", r"novela", r"personaje",
    r"geschichte", r"roman", r"figur", r"histoire", r"personnage", r"故事", r"小说", r"角色", r"kahani",
    r"comedy sketch", r"sketch where", r"skit", r"parody", r"parodie", r"parodia", r"made-up", r"made up",
    r"mystery", r"whodunit", r"thriller", r"imaginary", r"imaginaire", r"imaginaria", r"imaginario", r"erfunden",
    r"erfundenen", r"erfundene", r"erfundener", r"ficticio", r"ficticia", r"fictif", r"fictive", r"虚构",
    r"rpg", r"d&d", r"dungeon master", r"campaign setting", r"writing group", r"writing class", r"scene",
    r"dialogue", r"chapter", r"my book", r"my novel", r"fanfic", r"fan fiction", r"panto", r"pantomime", r"sitcom",
    r"npc", r"villain", r"protagonist", r"detective story", r"escena", r"capítulo", r"szene", r"kapitel", r"scène",
    r"chapitre", r"剧本", r"kurzgeschichte", r"krimi", r"noir",
];

/// Organisations and their contact points: a phone number, mailbox or address near these words
/// is a business's or an authority's, not a private person's.
#[rustfmt::skip]
pub(crate) const ORG: &[&str] = &[
    // Company forms
    r"ltd", r"ltd\.", r"limited", r"inc", r"inc\.", r"llc", r"plc", r"gmbh", r"ag", r"corp", r"corp\.", r"s\.a\.",
    r"s\.l\.", r"sarl", r"sas", r"kg", r"pvt", r"pty", r"company", r"company's", r"companies", r"business",
    r"registered office", r"head office", r"headquarters", r"hq", r"company no", r"company number", r"vat",
    // Places of business and public bodies
    r"store", r"shop", r"restaurant", r"pizzeria", r"pizza place", r"trattoria", r"bistro", r"brasserie", r"café",
    r"cafe", r"pub", r"bar", r"hotel", r"venue", r"museum", r"gallery", r"theatre", r"theater", r"cinema",
    r"pharmacy", r"chemist", r"supermarket", r"bakery", r"salon", r"gym", r"garage", r"dealership", r"menu",
    r"office", r"branch", r"reception", r"front desk", r"box office", r"airline", r"airport", r"station",
    r"supplier", r"provider", r"retailer", r"council", r"city hall", r"town hall", r"embassy", r"consulate",
    r"ministry", r"department", r"agency", r"authority", r"dmv", r"irs", r"hmrc", r"post office", r"library",
    r"university", r"school office", r"helpline", r"hotline", r"help desk", r"helpdesk", r"service desk",
    r"switchboard", r"customer service", r"customer services", r"customer care", r"customer support",
    r"support line", r"support team", r"sales team", r"service number", r"complaints", r"bookings", r"reservations",
    r"enquiries", r"inquiries", r"their", r"theirs", r"building", r"shopping cent(?:re|er)", r"community cent(?:re|er)", r"medical cent(?:re|er)",
    r"health cent(?:re|er)", r"leisure cent(?:re|er)", r"sports cent(?:re|er)", r"visitor cent(?:re|er)",
    r"call cent(?:re|er)", r"civic cent(?:re|er)", r"garden cent(?:re|er)", r"clinic", r"hospital",
    r"5-star review", r"five-star review", r"5-star google review", r"google review", r"review for", r"tripadvisor",
    r"yelp", r"trustpilot", r"reseña de 5 estrellas", r"google-bewertung", r"avis google", r"fulfil?lment cent(?:re|er)", r"returns cent(?:re|er)", r"distribution cent(?:re|er)", r"warehouse",
    r"lockbox", r"dental", r"dental practice", r"dentist's", r"surgery's",
    r"walk-in", r"walk-ins", r"book a table", r"reserve a table", r"table for two", r"table for four", r"takeaway",
    r"take-away", r"dine-in", r"happy hour", r"reservar mesa", r"reservar una mesa", r"tisch reservieren",
    r"réserver une table",
    r"marketplace", r"mall", r"osteria", r"delicatessen", r"poison control", r"open 24 hours", r"opening hours", r"opening times", r"appointment line",
    r"information line", r"info line", r"enquiry line", r"booking line", r"service centre", r"service center",
    // Spanish
    r"empresa", r"tienda", r"restaurante", r"museo", r"oficina", r"atención al cliente", r"servicio al cliente",
    r"centralita", r"ayuntamiento", r"consulado", r"embajada", r"sede", r"sucursal", r"farmacia", r"aerolínea",
    r"ministerio", r"hacienda", r"su teléfono", r"su dirección", r"biblioteca", r"horario", r"horarios",
    r"información", r"centro comercial", r"centro de salud", r"clínica",
    // German
    r"firma", r"unternehmen", r"geschäft", r"laden", r"museum", r"büro", r"kundenservice", r"kundenhotline",
    r"kundendienst", r"zentrale", r"amt", r"bürgeramt", r"rathaus", r"behörde", r"botschaft", r"konsulat",
    r"finanzamt", r"filiale", r"apotheke", r"fluggesellschaft", r"hotline der", r"ihre nummer", r"bibliothek",
    r"öffnungszeiten", r"auskunft", r"einkaufszentrum", r"ärztezentrum", r"praxis",
    // French
    r"entreprise", r"société", r"magasin", r"boutique", r"musée", r"bureau", r"service client", r"standard",
    r"mairie", r"préfecture", r"ambassade", r"consulat", r"caf", r"cpam", r"urssaf", r"siège", r"agence",
    r"pharmacie", r"leur numéro", r"leur adresse", r"bibliothèque", r"horaires", r"renseignements", r"clinique",
    r"centre commercial",
    // Chinese, Hinglish
    r"公司", r"客服", r"博物院", r"博物馆", r"商店", r"餐厅", r"酒店", r"政府", r"办事处", r"银行", r"大使馆", r"热线", r"门店", r"图书馆", r"营业时间", r"服务中心",
    r"customer care number", r"dukaan",
    // A business speaking to its customers, its opening days, and kinds of shops and sites.
    r"call us", r"contact us", r"email us", r"e-mail us", r"visit us", r"find us", r"text us", r"whatsapp us",
    r"llámanos", r"llamanos", r"contáctanos", r"escríbenos", r"visítanos", r"appelez-nous", r"contactez-nous",
    r"écrivez-nous", r"rufen sie uns an", r"kontaktieren sie uns", r"besuchen sie uns", r"schreiben sie uns",
    r"联系我们", r"mon-fri", r"mon–fri", r"monday to friday", r"monday-friday", r"mon to fri", r"mon-sat", r"mon–sat", r"tue-sat", r"tue–sat",
    r"de lunes a viernes", r"de lunes a sábado", r"lunes a viernes", r"lunes a sábado", r"montag bis freitag",
    r"mo-fr", r"mo–fr", r"du lundi au vendredi", r"du lundi au samedi", r"周一至周五", r"depot", r"warehouse",
    r"industrial estate", r"business park", r"goods-in", r"goods in", r"suppliers", r"ferretería", r"panadería",
    r"peluquería", r"carnicería", r"librería", r"papelería", r"zapatería", r"taller", r"bäckerei", r"metzgerei",
    r"werkstatt", r"friseursalon", r"boulangerie", r"boucherie", r"librairie", r"quincaillerie", r"épicerie",
    // Asking whether or when a place is open (round 6): only a business or an office opens.
    r"open on sundays", r"open on saturdays", r"open on weekends", r"open on", r"opens at", r"open until", r"still open",
    r"open today", r"a qué hora abre", r"a qué hora abren", r"abre los", r"abren los", r"abre el", r"abierto el",
    r"à quelle heure ouvre", r"ouvert le", r"ouverte le", r"ouvre le", r"geöffnet", r"öffnet", r"samstags offen", r"sonntags offen", r"heute offen", r"noch offen",
    r"几点开门", r"开门", r"营业", r"kab khulta", r"kab khulti", r"khulta hai", r"khulti hai",
];

/// Sites of a business (depots, warehouses, plants, branches): coordinates given for one of these,
/// with no private person in the text, are a workplace's, not someone's whereabouts.
#[rustfmt::skip]
pub(crate) const SITE: &[&str] = &[
    r"depot", r"depots", r"warehouse", r"warehouses", r"dc", r"distribution cent(?:re|er)", r"fulfil?ment cent(?:re|er)",
    r"hub", r"yard", r"plant", r"factory", r"premises", r"facility", r"campus", r"site", r"store", r"stores",
    r"branch", r"branches", r"outlet", r"showroom", r"workshop", r"industrial estate", r"business park",
    r"lager", r"warenlager", r"zentrallager", r"werk", r"fabrik", r"filiale", r"niederlassung", r"betriebshof",
    r"entrepôt", r"dépôt", r"usine", r"succursale", r"magasin", r"almacén", r"almacen", r"bodega", r"nave",
    r"fábrica", r"planta", r"sucursal", r"tienda", r"仓库", r"工厂", r"门店", r"分店", r"厂区", r"godown",
];

/// First-person or relation phrases that make a contact detail personal.
#[rustfmt::skip]
pub(crate) const PERSONAL_CONTACT: &[&str] = &[
    r"my (?:phone|number|mobile|cell|email|e-mail|address|home|flat|apartment|house|place|personal|new|work|landline|whatsapp|building|block|street|unit)",
    r"call me", r"text me", r"reach me", r"email me", r"e-mail me", r"mail me", r"write me", r"write to me",
    r"contact me", r"ring me", r"message me", r"find me", r"send it to me", r"i live", r"i'm at", r"we live",
    r"lives at", r"live at", r"home address", r"mi (?:teléfono|número|móvil|movil|correo|email|dirección|direccion|casa|piso)",
    r"llámame", r"escríbeme", r"vivo en", r"meine (?:nummer|handynummer|telefonnummer|adresse|e-mail|email|wohnung)",
    r"mein (?:handy|telefon)", r"ruf mich", r"schreib mir", r"ich wohne", r"mon (?:numéro|portable|adresse|email|mail)",
    r"appelle-moi", r"écris-moi", r"j'habite", r"我的电话", r"我的手机", r"我的邮箱", r"我的地址", r"我住", r"mera number",
    r"mera phone", r"mera address", r"mera pata", r"mujhe call", r"rehta hoon", r"rehti hoon", r"rehte hain",
    r"rehta hu", r"rehti hu", r"mera ghar", r"hamara ghar", r"emergency contact", r"next of kin",
    r"contacto de emergencia", r"notfallkontakt", r"contact d'urgence", r"personne à prévenir", r"紧急联系人",
];

/// Well-known placeholder data of forms and documentation.
#[rustfmt::skip]
pub(crate) const PLACEHOLDER: &[&str] = &[
    r"john doe", r"jane doe", r"john q\. public", r"joe bloggs", r"jane bloggs", r"john smith doe", r"max mustermann",
    r"erika mustermann", r"mustermann", r"musterfrau", r"musterstraße", r"musterstrasse", r"musterstadt",
    r"musterweg", r"anytown", r"anystate", r"any town", r"123 main st", r"123 main street", r"123 fake street",
    r"example street", r"jean dupont", r"fulano de tal", r"fulano", r"mengano", r"张三", r"李四", r"王五", r"foo bar",
    // Round 7: the John Does of other languages and forms (Spain/Latin America, UK, Italy, Poland,
    // Switzerland, Japan, Korea) and placeholder mail addresses.
    r"juan p[ée]rez", r"calle falsa", r"calle ejemplo", r"any street", r"a\.? ?n\.? other", r"mario rossi",
    r"jan kowalski", r"hans muster", r"taro yamada", r"山田太郎", r"홍길동", r"rue de l'exemple",
    r"(?:exemple|ejemplo|beispiel|esempio|example|usuario|utilisateur|nom|nombre|name|vorname\.nachname|prenom\.nom)@[a-z0-9\-]+(?:\.[a-z]{2,6})+",
    r"[a-z0-9._\-]+@(?:domaine|dominio|yourdomain|tudominio|votredomaine|deinedomain|ihredomain|domain|yourcompany|tuempresa)\.[a-z]{2,6}",
    r"lorem ipsum", r"acme", r"000-00-0000", r"123-45-6789", r"01/01/1970", r"1970-01-01", r"01\.01\.1970",
    r"01/01/1900", r"xx/xx/xxxx", r"example\.com", r"example\.org", r"example\.net", r"ejemplo\.(?:com|es|org)",
    r"beispiel\.(?:de|com|org)", r"exemple\.(?:com|fr|org)", r"esempio\.(?:it|com)",
    // Sample values published in standards and bank documentation.
    r"fr76 ?3000 ?6000 ?0112 ?3456 ?7890 ?189", r"de89 ?3704 ?0044 ?0532 ?0130 ?00", r"gb29 ?nwbk ?6016 ?1331 ?9268 ?19",
    r"gb82 ?west ?1234 ?5698 ?7654 ?32", r"es91 ?2100 ?0418 ?4502 ?0005 ?1332", r"11010519491231002x",
    r"078-05-1120", r"13800138000",
];

/// Landmarks: coordinates of a sight are not a person's location.
#[rustfmt::skip]
pub(crate) const LANDMARK: &[&str] = &[
    r"tower", r"museum", r"cathedral", r"palace", r"bridge", r"stadium", r"airport", r"monument", r"statue",
    r"temple", r"castle", r"summit", r"mount", r"national park", r"landmark", r"torre", r"museo", r"catedral",
    r"palacio", r"tour", r"musée", r"cathédrale", r"château", r"turm", r"dom", r"schloss", r"塔", r"博物馆", r"故宫",
    r"长城", r"qila", r"fort", r"opera house", r"tor", r"mahal", r"basilica", r"basílica", r"basilique",
];

/// Labels of one-time, verification and recovery codes (a secret in any language).
#[rustfmt::skip]
pub(crate) const OTP: &[&str] = &[
    r"otp", r"otp code", r"one-time code", r"one time code", r"one-time password", r"one time password",
    r"one-time passcode", r"verification code", r"verify code", r"security code", r"confirmation code",
    r"authentication code", r"auth code", r"2fa", r"2fa code", r"2-fa", r"two-factor code", r"mfa code",
    r"login code", r"sign-in code", r"signin code", r"access code", r"passcode", r"recovery codes?",
    r"backup codes?", r"tan", r"mtan", r"sms-tan", r"pushtan", r"código de verificación", r"codigo de verificacion",
    r"código de seguridad", r"código de acceso", r"código de confirmación", r"clave de verificación", r"clave otp",
    r"código otp", r"bestätigungscode", r"verifizierungscode", r"sicherheitscode", r"einmalcode", r"einmalpasswort",
    r"freischaltcode", r"code de vérification", r"code de verification", r"code de sécurité", r"code de confirmation",
    r"code à usage unique", r"code d'accès", r"code sms", r"验证码", r"动态码", r"动态密码", r"校验码", r"短信验证码",
    r"ओटीपी",
];

/// Labels of door, gate, keypad and alarm codes (a secret that opens someone's home).
#[rustfmt::skip]
pub(crate) const DOOR_CODE: &[&str] = &[
    r"door code", r"front door code", r"gate code", r"entry code", r"entrance code", r"building code",
    r"keypad code", r"keypad", r"lockbox code", r"lockbox", r"lock box", r"key safe", r"key box", r"keybox",
    r"alarm code", r"alarm pin", r"garage code", r"garage door code", r"buzzer code", r"intercom code", r"door pin",
    r"code de la porte", r"code de porte", r"code d'entrée", r"code d'entree", r"code de l'immeuble",
    r"code du portail", r"code du hall", r"code de l'alarme", r"code d'alarme", r"digicode", r"boîte à clés",
    r"türcode", r"haustürcode", r"tür-code", r"zugangscode", r"alarmcode", r"torcode", r"schlüsselsafe",
    r"schlüsseltresor", r"código de la puerta", r"código del portal", r"código de entrada", r"código del portón",
    r"código de la alarma", r"clave del portal", r"clave de la puerta", r"caja de llaves", r"门禁密码", r"门禁码",
    r"门锁密码", r"大门密码", r"密码锁", r"gate ka code", r"darwaze ka code", r"lock ka code",
];

/// A bare "code" (a secret only in a sentence about a received text message).
pub(crate) const CODE_WORD: &[&str] = &[r"code", r"código", r"codigo", r"kode", r"कोड", r"码"];

/// Words of a sentence about a received text message or a caller asking for a code.
#[rustfmt::skip]
pub(crate) const SMS: &[&str] = &[
    r"text", r"texted", r"texts", r"sms", r"sent me", r"received", r"got a", r"bank", r"never share", r"share",
    r"whatsapp", r"message", r"aaya", r"aayi", r"bhej[a-z]*", r"mensaje", r"recibí", r"recibido", r"me llegó",
    r"nachricht", r"bekommen", r"erhalten", r"reçu", r"message", r"短信", r"收到", r"发来",
];

/// Wallet recovery (seed) phrase context.
#[rustfmt::skip]
pub(crate) const SEED: &[&str] = &[
    r"seed phrase", r"seed words", r"recovery phrase", r"secret recovery phrase", r"mnemonic", r"wallet",
    r"12-word", r"24-word", r"12 words", r"24 words", r"frase semilla", r"frase de recuperación", r"palabras semilla",
    r"seed-phrase", r"wiederherstellungsphrase", r"phrase de récupération", r"phrase secrète", r"助记词", r"钱包",
    r"crypto", r"metamask", r"ledger", r"bitcoin",
];
