//! Table-driven unit tests on hand-written synthetic inputs (no real personal data).
//! The labelled multilingual corpus and its evaluation live in `tests/privacy/` and
//! `core/tests/privacy_corpus.rs`.

use super::*;

fn cats(text: &str) -> Vec<Category> {
    detector().scan(text).categories
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
