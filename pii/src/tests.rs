//! Table-driven unit tests on hand-written synthetic inputs (no real personal data).
//! The labelled multilingual corpus and its evaluation live in `tests/privacy/` and
//! `core/tests/privacy_corpus.rs`.

use super::*;

fn cats(text: &str) -> Vec<Category> {
    detector().scan(text).categories
}

/// Every text of `table` is reported with (at least) its category; lists all that are not.
fn assert_finds(table: &[(&str, Category)]) {
    let mut failures = Vec::new();
    for (text, want) in table {
        let r = detector().scan(text);
        if !r.categories.contains(want) {
            failures.push(format!("{text:?}: want {want}, got {:?}", r.categories));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every text of `clear` scans as harmless and every text of `flagged` as sensitive; lists all
/// that do not.
fn assert_clear_and_flagged(clear: &[&str], flagged: &[&str]) {
    let mut failures = Vec::new();
    for text in clear {
        let r = detector().scan(text);
        if r.sensitive {
            failures.push(format!("harmless {text:?}: {:?}", r.categories));
        }
    }
    for text in flagged {
        if !detector().scan(text).sensitive {
            failures.push(format!("sensitive {text:?} not flagged"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn detector_builds() {
    assert!(detector().is_ready());
    assert!(PiiDetector::new().is_ready());
}

#[test]
fn sensitive_table() {
    use Category::*;
    let table: &[(&str, &[Category])] = &[
        ("Reach me at jane.roe@gmail.com tomorrow", &[Email]),
        ("write to jane dot roe at gmail dot com", &[Email]),
        ("Call me on +44 7700 900123 after five.", &[Phone]),
        ("my number is five five five, one two three, four five six seven", &[Phone]),
        ("My SSN is 536-90-7841.", &[GovernmentId]),
        ("NI number AB 12 34 56 C", &[GovernmentId]),
        ("Mi DNI es 12345678Z", &[GovernmentId]),
        ("codice fiscale RSSMRA85T10A562S", &[GovernmentId]),
        ("身份证号码：11010519491231002X", &[GovernmentId]),
        ("Mera Aadhaar 2345 6789 0124 hai", &[GovernmentId]),
        ("Charge my card 4556 7375 8689 9855 please", &[PaymentCard]),
        ("卡号：４５５６７３７５８６８９９８５５", &[PaymentCard]),
        ("My IBAN is DE44 5001 0517 5407 3249 31", &[Iban]),
        ("routing number 011000015 account 123456789", &[BankAccount]),
        ("My date of birth is 14 March 1990.", &[DateOfBirth]),
        ("I was diagnosed with type 2 diabetes last year", &[Health]),
        ("我上个月被诊断出抑郁症", &[Health]),
        ("export KEY=AKIAQWERTYUIOPASDFGH", &[Credential]),
        ("my password is Tr0ub4dor&3", &[Credential]),
        ("postgres://app:S3cr3t!x@db.internal:5432/prod", &[Credential]),
        ("I'm at 48.858370, 2.294481 now", &[Location]),
        ("Send it to 742 Evergreen Terrace, Springfield, OR 97403", &[PostalAddress]),
        ("Mein Vater hatte letztes Jahr einen Herzinfarkt.", &[Health]),
        ("Mere papa ka operation hai next week.", &[Health]),
        ("My son has a cold, should he stay home?", &[Health]),
        ("Personalausweisnummer: LZ6311T47", &[GovernmentId]),
        ("Dr. Ana Ruiz, 52, lives in Toledo and earns 60.000 € a year.", &[PersonName]),
        ("Meine Kollegin Anna Schmidt hat Brustkrebs.", &[Health]),
        ("我叫王伟，今年35岁。", &[PersonName]),
        ("mera number nau aath saat chhah paanch chaar teen do ek shunya hai", &[Phone]),
        ("email: maria.lopez arroba gmail punto com", &[Email]),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----", &[Credential]),
        ("Mi DNI es 12345678Z y mi móvil +34 612 345 678", &[GovernmentId, Phone]),
        ("Account number 12345678, phone 0612 345 678 90", &[BankAccount, Phone]),
        ("Name: Ana Ruiz, DOB 03/04/1988, passport X1234567, tel. +34 612 345 678", &[PersonName, DateOfBirth, GovernmentId, Phone]),
        ("auth: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", &[Credential]),
    ];
    for (text, want) in table {
        let r = detector().scan(text);
        assert!(r.sensitive, "not flagged: {text}");
        for c in *want {
            assert!(r.categories.contains(c), "{text}: want {c}, got {:?}", r.categories);
        }
    }
}

#[test]
fn hard_negatives_table() {
    let table = [
        "What are the early symptoms of measles?",
        "What did Barack Obama say in 2009?",
        "Barack Obama was born on August 4, 1961. Write a short biography.",
        "Where is my order #84736291? It was due yesterday.",
        "Can you summarize the book with ISBN 978-3-16-148410-0?",
        "After upgrading from 10.0.19045.2965 to 11 the app crashes.",
        "What is 555 - 867 - 5309?",
        "In Stripe test mode use the card 4242 4242 4242 4242 with any future date.",
        "password = os.environ[\"DB_PASSWORD\"]",
        "How do I reset my password if I forgot it?",
        "Commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 broke the build.",
        "Contact us at support@example.com",
        "Translate 'good morning' into German.",
        "I'm writing a blog post about diabetes prevention; give me five tips.",
        "Can you help me diagnose this error in my Rust code?",
        "Call the function with the argument 5551234567 and see what happens.",
        "Write a story about a detective named John Smith who lives in London.",
        "Paris compte environ 2 102 650 habitants ; compare avec Lyon.",
        "postgres://user:password@localhost:5432/app is the template in the docs.",
        "const apiKey = process.env.API_KEY;",
        "Wie beantrage ich einen neuen Reisepass?",
        "订单号2024051200123456789还没发货。",
        "Mera order ID 403-5551234-9876543 hai, kab aayega?",
        "Angela Merkel wurde am 17. Juli 1954 in Hamburg geboren.",
    ];
    for text in table {
        let r = detector().scan(text);
        assert!(!r.sensitive, "flagged {:?}: {text}", r.categories);
    }
}

#[test]
fn test_card_without_doc_context_is_flagged() {
    assert_eq!(cats("my card is 4242 4242 4242 4242 exp 12/29"), vec![Category::PaymentCard]);
}

#[test]
fn spans_are_original_byte_offsets() {
    let text = "Ｔｅｌ: ＋３４ ６１２ ３４５ ６７８ — ok";
    let r = detector().scan(text);
    assert!(r.sensitive);
    let s = r.spans.iter().find(|s| s.category == Category::Phone).expect("phone span");
    assert_eq!(&text[s.start..s.end], "＋３４ ６１２ ３４５ ６７８");
}

#[test]
fn empty_and_weird_input_never_panics() {
    for t in ["", " ", "\u{200b}", "+", "((((", "0", "@", "----", "🙂", "a@b", "ß", "İ", "\u{FEFF}1"] {
        let _ = detector().scan(t);
    }
    let long = "x1 ".repeat(10_000);
    let _ = detector().scan(&long);
}

#[test]
fn report_serializes_snake_case() {
    let r = detector().scan("card 4556 7375 8689 9855");
    let j = serde_json::to_string(&r).expect("json");
    assert!(j.contains("\"payment_card\""), "{j}");
    assert_eq!(Category::GovernmentId.as_str(), "government_id");
    assert_eq!(serde_json::to_string(&Category::DateOfBirth).expect("json"), "\"date_of_birth\"");
}

#[test]
fn detector_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PiiDetector>();
    // Shared use from several threads gives the same answers.
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| detector().scan("IBAN DE89 3704 0044 0532 0130 00 please").categories))
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), vec![Category::Iban]);
    }
}

#[test]
fn confidence_reflects_suppressed_look_alikes() {
    let clean = detector().scan("Translate 'good morning' into German.");
    let doc_card = detector().scan("In Stripe test mode use the card 4242 4242 4242 4242.");
    assert!(!clean.sensitive && !doc_card.sensitive);
    assert!(doc_card.confidence < clean.confidence, "{} vs {}", doc_card.confidence, clean.confidence);
    let card = detector().scan("Charge my card 4556 7375 8689 9855");
    assert!(card.confidence >= 0.9);
}

/// Issue #18: obfuscations that passed the rules. Each line was missed by the detector before
/// the normalization of `normalize.rs` learned it (checked with the old build).
#[test]
fn obfuscations_are_undone() {
    use Category::*;
    let table: &[(&str, Category)] = &[
        // Spelled-out digits with a spoken "at ... dot" email.
        ("reach me at tom dot byrne at yahoo dot com or four one five, eight two six, three nine oh one", Email),
        ("mail rahul.k88 at the rate gmail dot com", Email),
        ("write to me at t.byrne77 (at) proton (dot) me instead", Email),
        ("send it to me at t.byrne77 [at] outlook [dot] com", Email),
        // French and Spanish numbers read in pairs.
        ("mon portable: zéro six, douze, quarante-huit, trente-trois, soixante-dix", Phone),
        ("mi móvil es seis doce, treinta y cuatro, cincuenta y seis, setenta y ocho", Phone),
        // Cyrillic and Greek look-alike letters (confusable folding).
        ("my address is t\u{043e}m.byrne@gm\u{0430}il.com", Email),
        ("mail: t\u{03bf}m.byrne@outl\u{03bf}ok.com", Email),
        // HTML character references and URL escapes for "@" and ".".
        ("contact tom.byrne&#64;yahoo.com", Email),
        ("contact tom.byrne&#x40;yahoo&#46;com", Email),
        ("contact tom.byrne&commat;yahoo.com", Email),
        ("mailto:tom.byrne%40yahoo.com?subject=hi", Email),
        ("iban=DE44%205001%200517%205407%203249%2031&x=1", Iban),
        // Mathematical bold, double-struck, circled and other-script digits (NFKC-style folding).
        ("my card: \u{1d7d2}\u{1d7d3}\u{1d7d3}\u{1d7d4} \u{1d7d5}\u{1d7d3}\u{1d7d5}\u{1d7d3} \u{1d7d6}\u{1d7d4}\u{1d7d6}\u{1d7d7} \u{1d7d7}\u{1d7d6}\u{1d7d3}\u{1d7d3}", PaymentCard),
        ("call me on \u{1d7dc}\u{1d7dd}\u{1d7e3} \u{1d7e0}\u{1d7da}\u{1d7df} \u{1d7db}\u{1d7e1}\u{1d7d8}\u{1d7d9}", Phone),
        ("call me: \u{2463}\u{2460}\u{2464} \u{2467}\u{2461}\u{2465} \u{2462}\u{2468}\u{24ea}\u{2460}", Phone),
        ("কল করুন +৪৪ ৭৭০০ ৯০০১২৩", Phone),
        // Separators: tabs, NUL, line breaks, bidi controls, combining marks, soft hyphens.
        ("Grandpa\t0161\t555\t2273", Phone),
        ("call 4\u{0}1\u{0}5\u{0}-\u{0}8\u{0}2\u{0}6\u{0}-\u{0}3\u{0}9\u{0}0\u{0}1", Phone),
        ("my number:\n4\n1\n5\n8\n2\n6\n3\n9\n0\n1", Phone),
        ("call +44\u{202e}7700\u{202c}900\u{200f}123", Phone),
        ("call 4\u{0336}1\u{0336}5\u{0336} 8\u{0336}2\u{0336}6\u{0336} 3\u{0336}9\u{0336}0\u{0336}1\u{0336}", Phone),
        ("to\u{00ad}m.by\u{00ad}rne@ya\u{00ad}hoo.com", Email), // already handled before (soft hyphen)
        ("tom.byrne@y\u{0301}a\u{0301}h\u{0301}o\u{0301}o.com", Email),
        // Spaced-out characters.
        ("email: t o m . b y r n e @ g m x . d e", Email),
        ("my social is 5 3 6 - 9 0 - 7 8 4 1", GovernmentId),
        ("IBAN D E 4 4 - 5 0 0 1 - 0 5 1 7 - 5 4 0 7 - 3 2 4 9 - 3 1", Iban),
    ];
    assert_finds(table);
}

/// Issue #18: weak categories. Each line was missed before the rules of this change (checked
/// with the old build); the values are made up.
#[test]
fn weak_categories_are_found() {
    use Category::*;
    let table: &[(&str, Category)] = &[
        // Credentials in prose, six languages.
        ("the router pw? oh it's Falcon#7781 I think", Credential),
        ("WLAN-Schlüssel: 5521 8830 1942 7765 0021", Credential),
        ("la contraseña del wifi: Paella_2023!", Credential),
        ("le code de ma carte bleue c'est 7712", Credential),
        ("the server login is root / Winter2022!", Credential),
        ("wifi password hai: Chai@Masala99", Credential),
        ("Your verification code is 551903. Do not share it.", Credential),
        ("OTP 660412 aaya hai, bata du kya?", Credential),
        ("收到的验证码是553201，别告诉别人", Credential),
        ("my bank texted me code 771204 and someone is asking for it", Credential),
        ("backup codes for my account, print them: 1122 3344, 5566 7788", Credential),
        (
            "my wallet seed phrase: galaxy ribbon timber coral fossil magnet orchid pepper wisdom canyon lunar velvet",
            Credential,
        ),
        ("redis://:Xk29dLq0@cache.internal:6379", Credential),
        ("Authorization: Basic YWxpY2U6czNjcjN0IQ==", Credential),
        // Health in natural wording, about a relative or a named person.
        ("My daughter Lily has a school trip. She was diagnosed with epilepsy and takes lamotrigine.", Health),
        ("mi hijo tiene TDAH y toma metilfenidato", Health),
        ("Meine Mutter hat seit Wochen Rückenschmerzen", Health),
        ("help me word a note about my dad. He's been on amoxicillin for bronchitis", Health),
        // Names with other personal data (money).
        ("I owe $4,300 to my sister-in-law Ana Ruiz and she wants it back", PersonName),
        // Dates of birth in a list.
        ("Team birthdays:\n- Olu Bello — 1990-04-12\n- Kim Ha — 1985-09-30", DateOfBirth),
        // Location in prose.
        ("I'm at the corner of Main St and 3rd Ave right now, come get me", Location),
        ("estoy en la esquina de Calle Mayor con Calle Arenal ahora mismo", Location),
        ("we're at ///index.home.raft tonight", Location),
        ("live location: lat 51.50722 lon -0.12750", Location),
        // Financial: CLABE, MICR line, German account number.
        ("Mi CLABE es 032180000118359719", BankAccount),
        ("check bottom line: ⑆ 021000021 ⑆ 1234 5678 9 ⑈", BankAccount),
        ("Kontonr. 0532013000, BLZ 370 400 44", BankAccount),
        // Cards followed by more numbers; government IDs after "license" / "my social".
        ("card 4556-7375 8689-9855 / 12-29 / 123", PaymentCard),
        ("my license is K512-4471-9920", GovernmentId),
    ];
    assert_finds(table);
}

/// Issue #18: over-blocks. Each line was flagged before this change; none is a private
/// person's data (business contact details, documentation/example data, code, fiction, Hinglish).
#[test]
fn business_documentation_and_code_are_not_blocked() {
    let table = [
        "Is the Lidl at 48 High Street open on Sundays?",
        "their customer service number is 0800 123 4567, is it free from mobiles?",
        "Call Acme Ltd on 020 7946 0321 for the quote, then draft the email",
        "The museum's address is 15 Rue de Rivoli, 75001 Paris, right?",
        "El teléfono de atención al cliente de Vueling es el 902 808 022?",
        "Die Hotline der Sparkasse ist 0800 1234567, wann ist sie besetzt?",
        "email the venue at weddings@oakbarn.co.uk about dates in May",
        "The template says Name: Jane Doe, DOB: 01/01/1970, SSN: 000-00-0000 as placeholders",
        "Im Beispiel steht Max Mustermann, Musterstraße 12, 12345 Musterstadt",
        "assert format_phone('4155550123') == '(415) 555-0123'",
        "For my novel: the killer lives at 9 Ravens Court. Write the chase scene.",
        "The Sydney Opera House tower is at 33.8568° S, 151.2153° E, how far from the bridge?",
        "In unit tests we use the DNI 12345678Z, is the letter right?",
        "Goa trip ka plan banao, budget 20k, Baga Beach zaroor",
        "I need to pick up a prescription at the pharmacy before 6",
    ];
    assert_clear_and_flagged(&table, &[]);
}

/// Formats and wordings the rules missed on the independent corpora of issue #18 (written here
/// afresh, not copied from them): door codes, rural routes, UPI ids, years in words, spaced digits
/// ending in punctuation, passwords after "is still", health words, family words without "my",
/// sentences without a subject, street corners in Spanish and Chinese, spoken emails.
#[test]
fn second_round_formats_are_found() {
    use Category::*;
    assert_finds(&[
        ("the gate code for the cottage is 7-3-1-9, leave the key under the mat", Credential),
        ("le digicode de l'entrée c'est 28B41, au 3e étage", Credential),
        ("Der Türcode vom Haus ist 4471A, klingeln geht nicht", Credential),
        ("el código del portal es 5520, sube al segundo", Credential),
        ("please ship the seeds to RR 3 Box 42, Lamar MO 64759 for my aunt", PostalAddress),
        ("mera UPI id rahul.verma77@ybl hai, paise isi pe bhejo", BankAccount),
        ("my date of birth is the 2nd of March nineteen eighty-four, fill it in", DateOfBirth),
        ("my card is 5 4 2 5 - 2 3 3 4 - 3 0 1 0 - 9 9 0 3, is it blocked?", PaymentCard),
        ("the office wifi password is still Autumn2023!Guest, can you rotate it", Credential),
        ("I'm hard of hearing and use a cochlear implant; ask the venue for a loop", Health),
        ("Dad's biopsy came back and the urologist wants to talk about options", Health),
        ("Diagnosed with lupus in May. Started hydroxychloroquine. How do I tell work?", Health),
        ("J'ai fait une fausse couche en juin, comment en parler à ma sœur ?", Health),
        ("我女儿有多动症，老师总是打电话给我", Health),
        ("Estoy ahora en Calle Mayor esquina con Calle Arenal, ven ya", Location),
        ("我现在在南京西路和石门一路路口，你快来接我", Location),
        ("reply to ana.k.88 at gmail and say yes", Email),
        ("我的邮箱是 wang_lei99 艾特 qq 点 com", Email),
    ]);
}

/// Contact details of organisations, published sample values and variable references that the
/// rules flagged on the independent corpora of issue #18 (written here afresh).
#[test]
fn second_round_hard_negatives_are_clear() {
    let table = [
        "Is support.uk@contoso-shop.com the right address for returns, or is there a form?",
        "The City Library, 40 Market Street, is open until 8 on Thursdays, right?",
        "Westfield Shopping Centre at 1 Ariel Way: is it open 24 hours over Christmas?",
        "Is the clinic's appointment line (212) 555-0142 staffed on weekends?",
        "¿El teléfono de información de Iberia es el 915 87 47 47 o cambió?",
        "In our banking docs the example IBAN is GB29 NWBK 6016 1331 9268 19, which part is the sort code?",
        "Para la demo usa usuario@ejemplo.com y el teléfono 600 000 000 en el formulario de prueba",
        "docker run -e DB_PASSWORD=$DB_PASSWORD postgres — is passing it like this safe?",
        "Write a scene where Evelyn, 71, hears from her oncologist that the tumour has grown.",
        "Auf dem Musterausweis steht Erika Mustermann, geb. 12.08.1964 – was heißt die Prüfziffer?",
        "The what3words demo address ///index.home.raft — which city is it in?",
        "Main 12, Lake Road pe rehta hoon, city centre kitna door hai?",
    ];
    let mut failures = Vec::new();
    for (i, text) in table.iter().enumerate() {
        let r = detector().scan(text);
        // The last one is a home address said in Hinglish: it must stay flagged.
        if r.sensitive != (i == table.len() - 1) {
            failures.push(format!("{text:?}: sensitive {} {:?}", r.sensitive, r.categories));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every text scans without a panic: triggers (`&`, `%`, `@`, digits, keywords, spelled digits)
/// next to multi-byte characters at every offset. An entity prefix followed by CJK text once
/// sliced inside a character (`&` + `，帮…`).
#[test]
fn no_panic_on_triggers_next_to_multibyte_text() {
    let pieces = [
        "&",
        "&#",
        "&#x",
        "&amp",
        "&commat",
        "%",
        "%4",
        "%40",
        "%C3",
        "@",
        " at ",
        " dot ",
        "4",
        "12",
        "+44 ",
        "-",
        ".",
        "我",
        "，",
        "é",
        "\u{301}",
        "\u{200b}",
        "\u{202e}",
        "𝟗",
        "٣",
        "ä",
        "ß",
        "😀",
        "Dr. ",
        "Mr ",
        "my ",
        "password ",
        "IBAN ",
        "nine ",
        "nau ",
        "\t",
        "\n",
        "\0",
    ];
    // A small deterministic generator (xorshift), so a failure reproduces.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let det = detector();
    for _ in 0..4000 {
        let mut t = String::new();
        for _ in 0..12 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t.push_str(pieces[(x % pieces.len() as u64) as usize]);
        }
        let _ = det.scan(&t);
    }
    let _ = det.scan("我的银行密码是Panda1998&，帮我想个好记的方法。");
}

/// Round 3 (issue #18): false blocks of the rules on the blind authors' corpora, taken verbatim
/// from `tests/privacy/independent/tuning/` (authors D, E, F): coordinates of sights named with
/// a word for the kind of sight ("Opera House", "Tor", "Mahal"), businesses named by their kind
/// ("Osteria", "Delicatessen", "Poison Control"), German question words read as a name, German
/// and noir fiction, the SSN the SSA voided and China Mobile's sample number in documentation.
/// Beside each group, sensitive texts of the same shape (also verbatim) that must stay flagged.
#[test]
fn third_round_hard_negatives_are_clear() {
    let clear = [
        // F-0016, F-0048, F-0049, F-0225
        "Taj Mahal ke coordinates 27.1751, 78.0421 hai, Agra Cantt station se kitna door hai?",
        "Plus code for Sydney Opera House is 4RRH46J4+7H? what does each part mean",
        "Wie weit ist es zu Fuß vom Brandenburger Tor (52.5163, 13.3777) zum Reichstag?",
        "Convert 27.1751° N, 78.0421° E (Taj Mahal) to degrees-minutes-seconds",
        // E-0013, F-0169, F-0142
        "Lupa Osteria at 170 Thompson St — do they take walk-ins on weeknights?",
        "Is Katz's Delicatessen at 205 E Houston St open on Thanksgiving? planning a trip",
        "Poison Control is 1-800-222-1222 in the US — can you make a fridge magnet layout with that and 911?",
        // F-0017
        "Welche Nebenwirkungen hat Ibuprofen bei längerer Einnahme?",
        // E-0048, F-0224
        "Schreib eine Kurzgeschichte über Kommissarin Lena Brandt, die in der Rosenstraße 12 einen Einbruch aufklärt",
        "Write a noir opening where Detective Mara Quinn, 42, diabetic, checks her insulin pen before kicking in the door at 19 Delancey Row",
        // D-0108, F-0099, F-0247
        "Why is 078-05-1120 called the most misused Social Security number in history? Something to do with a wallet insert?",
        "Why is 078-05-1120 called the most misused SSN ever? I read about the Woolworth wallet card",
        "文档示例里的手机号是13800138000，这个号码能直接用在演示截图里吗？",
        // E-0090, E-0044, F-0073, F-0232: passwords in general, a test card before "OTP", the
        // two famous example passwords
        "Write a password policy section for our employee handbook: minimum length, MFA, rotation",
        "Razorpay docs mein test card 4111 1111 1111 1111 diya hai, OTP kya daalu test mode mein?",
        "In my novel the hacker's password is 'correcthorsebatterystaple' as a nod to xkcd. Too cheesy?",
        "def test_signup():\n    resp = client.post('/signup', json={'email': 'alice@example.com', 'password': 'hunter2'})\n    assert resp.status_code == 201\n\nwhy 400?",
    ];
    let flagged = [
        // C-0205, C-0244, A-0181: a person at the same kind of place
        "Wir sind gerade bei 52.5163, 13.3777 – kannst du das Taxi direkt hierher schicken? Kind ist krank",
        "Je suis à 48.8584, 2.2945 en ce moment, sous la tour, je t'attends",
        "Bin gerade am Hauptbahnhof, Gleis 14, genau hier: 52.5251, 13.3694 – schreib Thomas, er soll mich mit dem Auto abholen, der Koffer ist zu schwer",
        // B-0254, F-0171: a named child's position
        "the kid's tracker app says Maya is at 34.05223,-118.24368 — is that her school or is she somewhere else? she should be at Lincoln Elementary",
        "Find My says Ava is at 40.74212, -73.98867 and she should be at school. is that near Baruch?",
        // E-0061: a technician on site, nobody named
        "tech on site for boiler service at 52.48631, -1.89012 since 14:20, customer not home. draft the no-access card text",
        // Written here (not from the corpora): a code before its label, a password after "is"
        "482917 is your verification code, can you read it back to me?",
        "my password is Hunter2024! and I keep forgetting it",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 4: regional formats with a check digit or a distinctive layout, and a password on a
/// command line. Each line was a leak of the rules (texts from the tuning authors E–H, or
/// written here); every one fails on the round-3 rules.
#[test]
fn fourth_round_regional_formats_are_found() {
    use Category::*;
    assert_finds(&[
        // E-0188: a French RIB without its labels; the key checks (97 - (89·bank + 15·branch + 3·account) mod 97)
        ("remboursement svp sur mon compte 20041 01005 91153162115 clé 13 (RIB), c'est pour la commande annulée", BankAccount),
        ("RIB 30002 00550 0000157841Z 25 pour le virement", BankAccount),
        // E-0229, F-0280: IBANs with a dash or space after the country code
        ("la cuenta para la devolución: ES-39-0049-1500-0050-6508-8524", Iban),
        ("my bank details for the refund (typed weird bc my keyboard is broken): GB-55-BA-RC-64-70-64-73-88-86-90", Iban),
        // F-0215: a password on a mysql command line; sshpass and --password= likewise
        ("mysql -h 10.0.3.14 -u reporting -p'Tr!ckyP@ss_2024' warehouse  gives access denied, is the quoting wrong?", Credential),
        ("sshpass -p 'Gr33nTea!' ssh deploy@10.0.0.5 hangs, why?", Credential),
        ("mysqldump -u root -pS3cr3tRoot db > dump.sql fails", Credential),
        // F-0160, H-0015: Japanese addresses, romanized and in kanji with a 〒 postal code
        ("Please ship the gift to my cousin in Japan: Naoko Ishikawa, 3-14-7 Kitazawa, Setagaya-ku, Tokyo 155-0031.", PostalAddress),
        ("Can you romanize my sister's address for a DHL form? 山田花子, 〒150-0043 東京都渋谷区道玄坂2丁目11-4 サンライズ道玄坂503号室", PostalAddress),
        ("送り先は大阪府大阪市北区梅田3丁目1-3です", PostalAddress),
        // H-0038: a Korean road-name address and resident registration number
        ("Kim Ji-woo, RRN 850412-2445445, address 서울특별시 마포구 월드컵북로 12길 34, 201호", PostalAddress),
        ("주민번호 850412-2445445 맞나요?", GovernmentId),
        // H-0039, G-0064, H-0042, G-0178, H-0036: regional IDs by checksum or layout
        ("my NRIC is S8874882D, is it safe to give it to the condo guard when visiting?", GovernmentId),
        ("Oigan, mi CURP es GOMA850312MDFRRN09 y en el SAT me dice que no coincide", GovernmentId),
        ("Is HARTL806125OJ9XK a valid format for a UK driving licence number? It's mine", GovernmentId),
        ("Mon numéro de registre national c'est le 85.07.30-309.43, c'est bien le bon format ?", GovernmentId),
        ("Booking a GP in Melbourne. My Medicare card is 6539 86911 4, IRN 2.", GovernmentId),
        ("Do I also need my TFN 720172772 for the payroll form?", GovernmentId),
        ("Mój PESEL to 44051401359, czy mogę go podać?", GovernmentId),
        ("マイナンバー 123456789018 を入力する欄はどこ？", GovernmentId),
    ]);
}

/// Round 4: coordinates with nobody attached are a place, not someone's whereabouts; lottery
/// draws are not phone numbers; 555-0100..0199 is the range reserved for fiction. Each line was a
/// false block of the rules (tuning authors F–H); people at coordinates are still found.
#[test]
fn fourth_round_hard_negatives_are_clear() {
    let clear = [
        "What's at 48.8584, 2.2945?",
        "Plot these in Leaflet: Big Ben 51.5007,-0.1246; Colosseum 41.8902,12.4922; Acropolis 37.9715,23.7257",
        "La Sagrada Família está en 41.4036, 2.1744; ¿cuál es la parada de metro más cercana?",
        "东方明珠坐标 31.2397, 121.4998，从外滩走过去要多久？",
        "Christ the Redeemer is at -22.9519, -43.2105. How high is it above sea level and can you walk up?",
        "EuroMillions 03 17 25 38 49, lucky stars 02 and 11. How much does matching 3 + 2 stars pay?",
        "Write a short mystery where the butler's phone number in the phonebook, 555-0199, is the key clue",
        "regex that matches the general shape of an IBAN (2 letters, 2 digits, up to 30 alphanumerics), I'm not validating",
    ];
    let flagged = [
        "Wir sitzen fest bei -45.243176, -79.204378, Akku fast leer, schreib eine Notfallnachricht.",
        "Estamos atrapados en 18.28500, -61.77956, escribe un mensaje de emergencia con las coordenadas.",
        "live location: lat 51.50722 lon -0.12750",
        "bin hier: 52.52437, 13.41053 – komm einfach runter zum Hof, Klingel geht nicht",
        "I'm at 40.74113, -73.98972 come get me",
        "我爸现在在 31.2304, 121.4737 这个位置迷路了",
        "call my neighbour on (212) 555-0142 tonight", // personal wording keeps even a reserved number
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 4: a secret reference in a manifest and the jwt.io example token are nobody's secret
/// (H-0280, G-0096; both were false blocks of the round-3 rules); a real token still is.
#[test]
fn secret_references_and_published_tokens_are_clear() {
    for text in [
        "k8s deployment snippet:\nenv:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db-creds\n        key: password\nwhy does the pod fail with CreateContainerConfigError?",
        "Explain each part of the jwt.io sample token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ] {
        assert!(!detector().scan(text).sensitive, "{text:?}: {:?}", detector().scan(text).categories);
    }
    assert!(detector().scan("env:\n  DB_PASSWORD: Tr0ub4dor&3xyz\n  valueFrom: none").sensitive);
}

/// Round 5: the kinds of harmless text the round-4 rules blocked on authors I and J (rephrased
/// here, not their texts): a business site's coordinates in the plural "we" of a company,
/// coordinates in fiction, the addresses everybody quotes (and the Palace's postcode), a business
/// speaking to customers ("call us"), its opening days, a kind of shop, and xkcd's example
/// password cut short. The same values stay flagged when a person is attached.
#[test]
fn fifth_round_hard_negatives_are_clear() {
    let clear = [
        "our returns depot is at 52.4862, -1.8904, write a short note for couriers on where to park",
        "Distance from our Leeds warehouse at 53.7997, -1.5492 to the Sheffield branch at 53.3811, -1.4701?",
        "the parcel hub we ship from sits at 51.4700, -0.4543, what's the best way to add it to the fleet app as a pin",
        "Notre entrepôt est au 45.7640, 4.8357 : rédige les consignes d'accès pour les livreurs.",
        "write the villain's boast: Captain Redbeard hides his gold at 18.4655 N 66.1057 W",
        "Address an envelope to Sherlock Holmes, 221B Baker Street, London NW1 6XE, for a themed party invite",
        "Is 12 Grimmauld Place, London a real address or only in the books?",
        "Is the Palace's address just London, SW1A 1AA? It's for a card to the King",
        "Window poster: 'Call us on (415) 826-3344 for same-day key cutting'",
        "Escribe un anuncio: Panadería Solera, Calle Mayor 18, 28013 Madrid, tel. 915 32 18 40, de lunes a sábado de 8 a 15 h",
        "the signup form rejects 'password': 'correct-horse' as too weak, which rule fires?",
        "Exam question for my pharmacology course: a 58-year-old presents with ankle swelling on amlodipine. Next step?",
        "alerts@crm.local gets the nightly import report, why is it empty?",
    ];
    let flagged = [
        "I'm stuck at our depot 53.4084, -2.9916 with a flat tyre, come get me",
        "my flat is right behind the warehouse at 53.7997, -1.5492, drop the keys there",
        "send the van to my house at 51.4700, -0.4543 tomorrow",
        "Call my brother on (415) 826-3344, he runs the shop",
        "Mein Passwort für das Lager-Konto ist Correct_Horse_77x!",
        "Case study? No, it's me: I was diagnosed with diabetes last week, what should I eat?",
        "Case study for my class about my mother, who presents with early dementia",
        "email my cousin Maria Lopez at maria.lopez@gmail.com about the wedding",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 6: a birth date asked about as general knowledge (a question mark closes the date's
/// clause; nobody speaks in the first person, no relation, no form label) is not a record of
/// anyone's birth date; people state a private person's birthday, they do not quiz the assistant on
/// it. Written for this test (not the authors' texts). The same dates stay flagged when stated, under
/// a label, about a relation, or when the question is about something else (a form's format).
#[test]
fn birth_dates_asked_as_general_knowledge_are_clear() {
    let clear = [
        "When was Ada Lovelace born? 10 December 1815, right?",
        "Is Roger Federer's birthday 08/08/1981? Planning a tennis quiz night.",
        "Victor Hugo est né le 26 février 1802 ? Je prépare un exposé.",
        "¿Frida Kahlo nació el 6 de julio de 1907?",
        "Wurde Albert Einstein wirklich am 14. März 1879 geboren?",
        "How old would Bruce Lee be today if he was born on 1940-11-27?",
    ];
    let flagged = [
        "My son was born on 08/08/2015, is he old enough for the tennis camp?",
        "DOB 10 December 1985? That's what the clinic form says for Ada Lovelace",
        "Is my grandmother's birthday 06/07/1937? She says it is",
        "Ada Lovelace, born 10 December 1985, lives at 12 Hill Road; what format does the form need?",
        "né le 04/12/1976, Marc Dubois, c'est pour la carte senior, il faut quel format ?",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 6: sample rows quoted from documentation, tutorials or test fixtures (a finding inside a
/// quotation, a documentation word in its sentence or just before it) are nobody's; written for
/// this test. The same rows stay flagged outside quotation marks, or when the text makes them
/// personal ("my", a relation), and a secret in quotes stays a secret.
#[test]
fn quoted_documentation_samples_are_clear() {
    let clear = [
        "The pandas tutorial shows the row 'Maria Keller, 17 Birch Lane, Springfield, IL 62704' - how do I split it into columns?",
        "Im Beispiel der Doku steht \"Hans Berger, Lindenstraße 4, 80331 München\" – wie trenne ich das per Regex?",
        "Dans l'exemple du tutoriel : « Claire Martin, claire.martin@exemple-entreprise.fr » — comment valider l'e-mail ?",
        "El ejemplo de la documentación usa 'Lucía Gómez, DNI 12345678Z'; ¿cómo se calcula la letra?",
        "unit test: assert normalize_phone('0176 1234 5678') == '+49 176 12345678', why does it fail?",
        "示例数据里有「王伟，13912345678」，这个正则怎么写？",
    ];
    let flagged = [
        "The pandas tutorial row is my own: 'Maria Keller, 17 Birch Lane, Springfield, IL 62704' - split it into columns",
        "Example for the form: my mother Hans Berger, Lindenstraße 4, 80331 München",
        "Tutorial step 3 says paste your key like 'sk_live_51HxQz8Kj2mN4pQrStUvWxYz0123456789abcdEFGH' - is that right?",
        "Maria Keller, 17 Birch Lane, Springfield, IL 62704 is the row from the tutorial, please split it",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 6: a phone number asked about as public knowledge (a question mark closes the number's
/// clause, nothing personal anywhere in the text) is a shop's or an office's, which people ask an
/// assistant to confirm; written for this test. The same numbers stay flagged when the text is
/// personal (first person, "my", a relation) or when the number is stated, not asked.
#[test]
fn phone_numbers_asked_as_public_knowledge_are_clear() {
    let clear = [
        "Is the lost property office of the Tube still 0343 222 1234?",
        "¿El teléfono de la farmacia de guardia de Sol es el 915 21 28 65?",
        "Die Hotline der Stadtwerke ist doch 0911 802 58 58, oder?",
        "le numéro du cinéma Pathé Wepler c'est bien le 01 45 22 47 94 ?",
    ];
    let flagged = [
        "Is my sister's number 0343 222 1234?",
        "My landlord said his number is 0911 802 58 58, or was it 58 59?",
        "le numéro de ma mère c'est bien le 01 45 22 47 94 ?",
        "The lost property office is 0343 222 1234, tell Priya Raman to call them tomorrow",
        "I gave them 0176 1234 5678 as a contact, is that right?",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 6: in a Hinglish sentence "me" is mostly the postposition "in" (में: "dengue me
/// platelets", "din me kitni baar"), not the English pronoun, so a general health question in
/// Hinglish is about nobody; written for this test. "me" after an English verb or preposition
/// ("help me"), "mujhe" and "mera" still make the sentence first person.
#[test]
fn hinglish_postposition_me_is_not_first_person() {
    let clear = [
        "Typhoid me kitne din tak bukhar rehta hai, general sawal hai",
        "Migraine me kaunsi dawai li jaati hai?",
        "Thyroid test khali pet me karna hota hai kya, ya kuch kha sakte hain?",
    ];
    let flagged = [
        "Mujhe typhoid hai, kitne din me theek hoga?",
        "Please help me, typhoid me kitne din bukhar rehta hai? 3 din se bukhar hai",
        "Mera thyroid test khali pet me karna hai kya?",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 6: asking whether or when a place opens makes its address a business's or an office's
/// (opening words in six languages join the organisation words); written for this test. A home
/// address stays flagged whatever opening words are near it ("my", a relation, a flat number).
#[test]
fn addresses_asked_with_opening_hours_are_clear() {
    let clear = [
        "Is the one at 221 Kings Road, Chelsea still open on Sundays?",
        "¿A qué hora abre la de Calle de Alcalá 120, Madrid, el sábado?",
        "Hat die in der Schillerstraße 14, 60313 Frankfurt samstags offen?",
        "上海市黄浦区南京东路300号周日几点开门？",
    ];
    let flagged = [
        "My sister lives at 221 Kings Road, Chelsea, is the park near her open on Sundays?",
        "¿A qué hora abre mi casa? Vivo en Calle de Alcalá 120, 3º B, Madrid",
        "Flat 4, 12 Schillerstraße 14, 60313 Frankfurt: is the door still open, my key is lost",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: a secret that says it is none — a placeholder value after a key ("SECRET_KEY=changeme",
/// "API_TOKEN=<your token>") or a token spelled to look fake ("not-a-real", "dummy", "example"
/// between its dashes) — is nobody's; written for this test. Random-looking values stay secrets,
/// whatever the key is called.
#[test]
fn placeholder_secrets_are_clear() {
    let clear = [
        "my config.sample.env has JWT_SECRET=changeme and STRIPE_KEY= — which ones must I fill in?",
        "The Discord docs show xoxp-this-is-not-a-real-token-1234 for user tokens, why that prefix?",
        "is it fine that our README shows GITHUB_TOKEN=ghp_your_token_here as the example?",
        "the tutorial sets sk_live_dummy_key_for_docs_only as STRIPE_KEY, will that charge anything?",
    ];
    let flagged = [
        "my .env has JWT_SECRET=f8Kq29xLmZ0pR7vT3nWc and STRIPE_KEY=sk_live_51HxQz8Kj2mN4pQrStUvWxYz01 — safe to commit?",
        "Slack token for the bot: xoxb-2948573019-4859201837465-Kq8XzLmP0vR7tN3wYc",
        "YOUR_TOKEN=ghp_8Kq29xLmZ0pR7vT3nWcYd4Fg6Hj1Kl2Mn5Pq in the README, is that a problem?",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: the John Does of other languages and forms (Juan Pérez and Calle Falsa, "1 Any
/// Street", A N Other, Mario Rossi, Jan Kowalski, 山田太郎) and placeholder mail addresses
/// (`exemple@…`, `…@tudominio.com`) are documentation placeholders like John Doe and Mustermann;
/// written for this test. The same names with a relation, "my" or a real-looking address stay
/// flagged.
#[test]
fn placeholder_people_of_other_languages_are_clear() {
    let clear = [
        "Plantilla de contrato: Arrendatario: Juan Pérez, DNI 00000000T, domicilio en Calle Falsa 123, Madrid",
        "La guía de ejemplo dice 'Mario Rossi, Via Roma 1, 00100 Roma', ¿lo traduzco igual?",
        "Sample Polish form: Jan Kowalski, PESEL 00000000000 — how do I fill it in?",
        "modèle de lettre : contact : prenom.nom@votredomaine.fr, remplacez par le vôtre",
        "form example: Name: A N Other, Address: 1 Any Street, Anytown - what goes in box 3?",
    ];
    let flagged = [
        "Mi vecino Juan Pérez, DNI 48213957K, vive en Calle Mayor 12, Madrid: ¿le mando el contrato?",
        "my email is juan.perez84@gmail.com, use that for the booking",
        "Plantilla rellenada con mis datos: María López Ruiz, DNI 48213957K, Calle Mayor 12, Madrid",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: a North American toll-free number after an "SSN"/"social security" or ID label is a
/// phone line (an SSN has 3-2-4 digits), and a catalogue's article number ("Art.-Nr.", "item
/// no.") is not a phone number; written for this test. An SSN next to the same label, and a
/// personal phone number, stay flagged.
#[test]
fn toll_free_lines_and_article_numbers_are_not_ids() {
    let clear = [
        "is the social security helpline still 1-800-772-1213 or did it change?",
        "ID card office toll free 888-227-1160, when do they open?",
        "passport seva helpline 1800-258-1800 hai na? timing kya hai?",
        "Hornbach Art.-Nr. 0388 41 72, Dübel 8x40, 100 Stück – passt das für Gipskarton?",
        "IKEA item no. 702 627 45, does it fit the PAX frame?",
    ];
    let flagged = [
        "my social security number is 512-48-7719, which form needs it?",
        "SSN 512 48 7719 for the tax return of my husband",
        "my cell is 312-555-0847 if the social security office calls back",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: a card number in a sentence about a provider's test cards ("sandbox", "test Visa",
/// "test mode") with no first person is a test card, and a sample account number padded with zeros
/// ("000123456789") in documentation is trivial; written for this test. "My card" in the same
/// sentence, or a real-looking account number, stays flagged.
#[test]
fn provider_test_cards_and_padded_sample_accounts_are_clear() {
    let clear = [
        "Checkout.com lists 4543 4740 0224 9996 as a test Visa for 3DS; what does the sandbox return?",
        "In Braintree test mode, 5555 5555 5555 4444 should decline?",
        "The bank's sample cheque shows account 000012345678 under the routing line, which is which?",
    ];
    let flagged = [
        "I used my card 4543 4740 0224 9996 in the sandbox by mistake, will it be charged?",
        "pay with 4543 4740 0224 9996 exp 08/27 cvv 311",
        "The sample cheque in the app shows my account 000048213957 — is it safe to post?",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: recovery and backup codes printed one per line below their label, letters and digits
/// (GitHub's "1bdb4-efe55"), are secrets; written for this test. A label followed by prose
/// stays clear.
#[test]
fn recovery_codes_below_their_label_are_secrets() {
    let flagged = [
        "Backup codes:\nk29fq-8vx3m\nq7w2e-9rt4y\nwhere should I store them?",
        "Recovery codes\n4827 1930\n5582 0017\n",
    ];
    let clear = ["What are recovery codes?\nPrint them and keep them safe, says the help page."];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: booking a table or asking about walk-ins makes an address a restaurant's (these
/// words join the organisation words); written for this test. A home address near them stays
/// flagged.
#[test]
fn addresses_of_restaurants_being_booked_are_clear() {
    let clear = [
        "Can you book a table for six at the noodle bar on 41 Greek Street, Soho, around 8?",
        "Is Bao at 53 Lexington St walk-in only or can we reserve?",
    ];
    let flagged = [
        "Book a table near my flat, 41 Greek Street, Soho, flat 2 — somewhere walkable",
        "My mum lives at 53 Lexington St, any walk-in places near her for lunch?",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: an employer's or colleague's words for someone's health — burn-out, a sick or fit
/// note, sick leave, "en arrêt", "de baja" — about a business partner, an employee or an intern
/// ("mon associé", "my business partner", "mi socia", "meine Mitarbeiterin"); written for this
/// test. The same words about nobody in particular stay clear.
#[test]
fn burnout_and_sick_notes_of_staff_are_health() {
    let flagged = [
        "ma salariée Inès Garnier est en arrêt maladie pour un burn-out, je la remplace comment ?",
        "my business partner Tom Reyes is off sick with burnout until March, how do I tell our clients?",
        "mi socia Laura Vidal está de baja por burnout, ¿cómo reparto su trabajo?",
        "meine Mitarbeiterin Jana Wolf hat eine Krankschreibung wegen Burn-out bis Juni – wie plane ich?",
    ];
    let clear = [
        "What are the early signs of burnout in small teams, in general?",
        "Comment éviter le burn-out dans une petite entreprise ? Des conseils généraux.",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: in a sentence about the writer's own fiction, "my" owns the novel, the campaign or
/// the sketch ("a character in my novel is diagnosed with…", "character sheet for my RPG: …,
/// asthmatic"), and a password in a story or sketch is a prop; written for this test. Any other
/// first person in the sentence — "I", "me", "my wife", "my diabetes" — keeps it personal.
#[test]
fn the_writers_own_fiction_is_not_the_writer() {
    let clear = [
        "A character in my novel, Captain Ilse Morrow, is diagnosed with epilepsy. How would she hide it from her crew?",
        "Character sheet for my sci-fi campaign: Dax Orlen, 51, pilot, asthmatic, owes the syndicate money. Flesh him out.",
        "Write a comedy sketch where a made-up uncle tells a hacker his password is 'letmein99' and is proud of it.",
    ];
    let flagged = [
        "Write a short story about my depression, I was diagnosed last year and want to put it into words.",
        "For my novel I need details: my wife was diagnosed with epilepsy in March, how do seizures start?",
        "Write a story for my son; my wifi password is Kq8-Lm29-Xz, put it in as a clue",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}

/// Round 7: a bank's routing number or sort code alone — no account, card or IBAN in the text and
/// nobody in it — is the code of a bank branch, which banks publish; and a review, a returns or
/// fulfilment centre, a warehouse, a lockbox or a dental practice makes an address a business's
/// (organisation words); written for this test. A routing number next to an account number, or
/// with "my", and a home address stay flagged.
#[test]
fn published_bank_codes_and_business_addresses_are_clear() {
    let clear = [
        "Is Wells Fargo's routing number 121000248 used for wires too?",
        "Barclays sort code 20-00-00, is that the head office one?",
        "Write a 5-star Google review for Maple Leaf Dental, 88 King St W, Toronto ON M5H 1A1, lovely staff",
        "Send the faulty blender back to the Currys Returns Centre, Unit 2, Fenlock Park, Newport NP10 8UP?",
    ];
    let flagged = [
        "my routing number is 121000248, what's the wire cutoff?",
        "routing 121000248 account 4455667788, pay the invoice today",
        "Send the blender back to me at 14 Fenlock Road, Newport NP10 8UP, flat 2",
    ];
    assert_clear_and_flagged(&clear, &flagged);
}
