//! Regex detectors: emails, IBANs, alphanumeric national IDs, credentials, coordinates, postal
//! addresses and dates of birth. Each runs on the normalized text and reports normalized spans.

use regex::Regex;

use super::checksum;
use super::context::sentence_of;
use super::lexicon as lx;
use super::{Category, Ctx, Out};

/// Published documentation test numbers: treated as non-sensitive only next to a test/doc word.
pub(crate) const TEST_IBANS: &[&str] = &[
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "GB29NWBK60161331926819",
    "GB33BUKB20201555555555",
    "FR1420041010050500013M02606",
    "ES9121000418450200051332",
    "NL91ABNA0417164300",
    "CH9300762011623852957",
    "IT60X0542811101000000123456",
    "BE68539007547034",
    "AT611904300234573201",
];

/// Published documentation API keys (not live secrets) recognised next to a doc/test word.
const DOC_SECRETS: &[&str] = &[
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "AKIAIOSFODNN7EXAMPLE",
    // The example token of jwt.io.
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
];

/// Local parts of role addresses (a mailbox of a function, not of a person).
const ROLE_LOCAL: &[&str] = &[
    "info",
    "support",
    "noreply",
    "no-reply",
    "donotreply",
    "sales",
    "contact",
    "help",
    "admin",
    "webmaster",
    "postmaster",
    "abuse",
    "security",
    "privacy",
    "press",
    "hello",
    "team",
    "billing",
    "jobs",
    "careers",
    "marketing",
    "newsletter",
    "office",
    "service",
    "kontakt",
    "contacto",
    "soporte",
    "ventas",
    "git",
    "complaints",
    "events",
    "bookings",
    "booking",
    "reservations",
    "reservas",
    "enquiries",
    "inquiries",
    "orders",
    "accounts",
    "invoices",
    "reception",
    "hr",
    "customerservice",
    "customer.service",
    "kundenservice",
    "service-client",
    "hola",
    "bonjour",
    "hallo",
    "feedback",
    "media",
    "partners",
    "legal",
    "dpo",
    "studio",
    "shop",
    "store",
    "mail",
    "post",
];

/// Top-level domains accepted at the end of a spoken ("at ... dot com") email.
const TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "io", "co", "de", "es", "fr", "in", "cn", "uk", "it", "nl", "ch", "at", "be",
    "mx", "ar", "br", "ru", "jp", "info", "biz", "me", "us", "ca", "au", "eu", "ai", "dev", "app", "pt", "pl", "se",
];

/// Free mail providers (a spoken "at gmail dot com" is an address even without other cues).
pub(crate) const MAIL_PROVIDERS: &[&str] = &[
    "gmail",
    "googlemail",
    "yahoo",
    "hotmail",
    "outlook",
    "live",
    "msn",
    "icloud",
    "me",
    "aol",
    "gmx",
    "web",
    "t-online",
    "proton",
    "protonmail",
    "yandex",
    "mail",
    "qq",
    "163",
    "126",
    "sina",
    "rediffmail",
    "orange",
    "free",
    "laposte",
    "wanadoo",
    "sfr",
    "libero",
    "terra",
    "telefonica",
    "arcor",
    "freenet",
    "zoho",
];

pub(crate) struct Patterns {
    email: Regex,
    email_obf: Regex,
    iban: Regex,
    nino: Regex,
    dni: Regex,
    nie: Regex,
    cf: Regex,
    cn_id: Regex,
    nir: Regex,
    pan: Regex,
    ausweis: Regex,
    id_token: Regex,
    secret_prefix: Regex,
    conn_str: Regex,
    password_kw: Regex,
    secret_assign: Regex,
    bearer: Regex,
    otp_value: Regex,
    /// A recovery or backup code alone on its line ("1bdb4-efe55", "8431 2290", "k7m2q9x4ab").
    code_line: Regex,
    /// A year in words ("nineteen ninety-two", "two thousand and one").
    spelled_year: Regex,
    /// An English month name, also abbreviated.
    month_word: Regex,
    /// An Indian UPI payment address ("priya.sharma92@okaxis"): a bank account's alias.
    upi: Regex,
    /// A door or keypad code: 3 to 10 letters and digits with at least 3 digits ("4B719", "1984A").
    door_value: Regex,
    what3words: Regex,
    coord_labelled: Regex,
    seed_run: Regex,
    coord_pair: Regex,
    coord_hemi: Regex,
    coord_dms: Regex,
    plus_code: Regex,
    addr_en: Regex,
    addr_us_zip: Regex,
    addr_uk_postcode: Regex,
    addr_po_box: Regex,
    addr_es: Regex,
    addr_de: Regex,
    addr_de_prep: Regex,
    addr_fr: Regex,
    addr_zh: Regex,
    addr_zh_admin: Regex,
    addr_in_house: Regex,
    addr_in_pin: Regex,
    postcode_city: Regex,
    date: Regex,
    /// A French RIB: bank code, branch code, account number and key ("20041 01005 91153162115 clé 13").
    fr_rib: Regex,
    /// A Singapore NRIC/FIN ("S1234567D").
    sg_nric: Regex,
    /// A Mexican CURP ("GOMA850312MDFRRN09").
    mx_curp: Regex,
    /// A UK driving licence number ("MORGA657054SM9IJ"): surname, birth date, initials, checks.
    uk_licence: Regex,
    /// A password given on a command line: `mysql -p'…'`, `sshpass -p …`, `--password=…`.
    cli_password: Regex,
    /// Japanese addresses: a 〒 postal code; prefecture, city or ward and a block number in kanji;
    /// a romanized "-ku"/"-shi" address with its block numbers or its postal code.
    addr_jp: Regex,
    /// Korean road-name addresses ("서울특별시 마포구 월드컵북로 12길 34").
    addr_kr: Regex,
}

impl Patterns {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let month_en = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";
        let month_es =
            r"(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre)";
        let month_de =
            r"(?:januar|jänner|februar|märz|maerz|april|mai|juni|juli|august|september|oktober|november|dezember)";
        let month_fr = r"(?:janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre)";
        let date = format!(
            r"(?i)(?-u:\b)(?:\d{{1,2}}[./-]\d{{1,2}}[./-](?:19|20)\d{{2}}|(?:19|20)\d{{2}}[./-]\d{{1,2}}[./-]\d{{1,2}}|{month_en}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}}|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{month_en}\s+(?:19|20)\d{{2}}|\d{{1,2}}\s+de\s+{month_es}\s+(?:de\s+|del\s+)?(?:19|20)\d{{2}}|\d{{1,2}}\.\s*{month_de}\s+(?:19|20)\d{{2}}|\d{{1,2}}(?:er)?\s+{month_fr}\s+(?:19|20)\d{{2}}|(?:19|20)\d{{2}}\s*年\s*\d{{1,2}}\s*月\s*\d{{1,2}}\s*[日号]?)"
        );
        let street_en = lx::STREET_EN;
        let states = lx::US_STATES;
        Ok(Patterns {
            email: Regex::new(
                r"(?i-u)[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}",
            )?,
            email_obf: Regex::new(
                r"(?i)([a-z0-9][a-z0-9_%+\-]*(?:(?:\.|\s*(?:\[dot\]|\(dot\)|\{dot\}|<dot>|\(punkt\)|\[punkt\]|\(punto\)|\[punto\]|\(point\)|\[point\]|\[\.\]|\(\.\))\s*|\s+(?:dot|punto|punkt|point)\s+|\s*点\s*)[a-z0-9_%+\-]+)*)(\s*(?:\[at\]|\(at\)|\{at\}|<at>|\[ät\]|\(ät\)|\(arroba\)|\[arroba\]|\(@\)|\[@\])\s*|\s+(?:at[\s\-]+the[\s\-]+rate(?:[\s\-]+of)?|at\s+sign|at|arroba|arobase|chez|ät)\s+|\s*艾特\s*|\s*@\s*)([a-z0-9\-]+(?:(?:\.|\s*(?:\[dot\]|\(dot\)|\{dot\}|<dot>|\(punkt\)|\[punkt\]|\(punto\)|\[punto\]|\(point\)|\[point\]|\[\.\]|\(\.\))\s*|\s+(?:dot|punto|punkt|point)\s+|\s*点\s*)[a-z0-9\-]+)*)",
            )?,
            iban: Regex::new(r"(?i-u)(?-u:\b)[a-z]{2}[ \-]?\d{2}(?:[ \-]?[a-z0-9]){11,30}")?,
            nino: Regex::new(r"(?-u:\b)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?-u:\b)")?,
            dni: Regex::new(r"(?i-u)(?-u:\b)\d{8}[ \-]?[a-z](?-u:\b)")?,
            nie: Regex::new(r"(?i-u)(?-u:\b)[xyz][ \-]?\d{7}[ \-]?[a-z](?-u:\b)")?,
            cf: Regex::new(
                r"(?i-u)(?-u:\b)[a-z]{6}[0-9lmnpqrstuv]{2}[abcdehlmprst][0-9lmnpqrstuv]{2}[a-z][0-9lmnpqrstuv]{3}[a-z](?-u:\b)",
            )?,
            cn_id: Regex::new(
                r"(?-u:\b)\d{6} ?(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]) ?\d{3}[\dXx](?-u:\b)",
            )?,
            nir: Regex::new(r"(?i-u)(?-u:\b)[1-478] ?\d{2} ?\d{2} ?(?:\d{2}|2[ab]) ?\d{3} ?\d{3} ?\d{2}(?-u:\b)")?,
            pan: Regex::new(r"(?-u:\b)[A-Z]{3}[PCHFATBLJG][A-Z]\d{4}[A-Z](?-u:\b)")?,
            ausweis: Regex::new(r"(?-u:\b)[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{8}\d?(?-u:\b)")?,
            id_token: Regex::new(
                r"(?i-u)(?-u:\b)[a-z]{0,6}\d[a-z0-9]{0,20}(?:[ \-/][a-z]{0,6}\d[a-z0-9]*){0,4}(?-u:\b)",
            )?,
            secret_prefix: Regex::new(concat!(
                r"(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
                r"|glpat-[A-Za-z0-9_\-]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
                r"|AIza[0-9A-Za-z\-_]{35}|ya29\.[0-9A-Za-z\-_]{20,}|sk-ant-[A-Za-z0-9_\-]{20,}",
                r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}|hf_[A-Za-z]{30,}|npm_[A-Za-z0-9]{36}",
                r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}|SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
                r"|SK[0-9a-fA-F]{32}|key-[0-9a-zA-Z]{32}|sq0(?:atp|csp)-[0-9A-Za-z\-_]{22,}",
                r"|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}|dop_v1_[a-f0-9]{64}|\d{8,10}:AA[0-9A-Za-z_\-]{33}",
                r"|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
                r"|AccountKey=[A-Za-z0-9+/=]{40,}|whsec_[A-Za-z0-9]{24,}|hvs\.[A-Za-z0-9_\-]{24,}|dapi[0-9a-f]{32}",
                r"|ATATT3[A-Za-z0-9_\-=]{40,}|xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{32,}|EAA[A-Za-z0-9]{80,}|AGE-SECRET-KEY-1[0-9A-Z]{50,}",
                r"|[MN][A-Za-z\d]{23}\.[A-Za-z\d_\-]{6}\.[A-Za-z\d_\-]{27,}|glc_[A-Za-z0-9+/]{32,}|sntrys_[A-Za-z0-9+/=]{40,}",
                r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
                r"|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
            ))?,
            conn_str: Regex::new(
                r"(?i)(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|sqlserver|jdbc:[a-z]+|ftp|sftp|smtp|ldaps?|https?)://([^\s:/@]*):([^\s@/]+)@[^\s/]+",
            )?,
            password_kw: Regex::new(
                r"(?i)(?:password|passwort|passwd|passphrase|pass phrase|pwd|pw|kennwort|contraseña|contrasena|clave|mot de passe|mdp|passcode|pin(?:[\s\-]?(?:code|nummer|number|número))?|(?:wi-?fi|wlan|wpa2?|netzwerk|network)[\s\-]?(?:key|schlüssel|passwort|password|code|clé)|schlüssel|clé (?:wi-?fi|wpa|de sécurité)|code (?:wi-?fi|secret|confidentiel)|code de (?:ma |la )?carte(?: bleue| bancaire)?|code (?:de )?cb|geheimzahl|nip|login|credentials|zugangsdaten|identifiants|credenciales|密码|口令|पासवर्ड)",
            )?,
            secret_assign: Regex::new(
                r#"(?i-u)(?:api[_\-\s]?key|apikey|api[_\-]?secret|app[_\-]?secret|secret(?:[_\-\s]?(?:access[_\-\s]?)?key)?|access[_\-\s]?key(?:[_\-\s]?id)?|(?:access|auth|refresh|session|private|bot|oauth|webhook)[_\-\s]?token|client[_\-\s]?secret|private[_\-\s]?key(?:[_\-\s]?id)?|signing[_\-\s]?(?:key|secret)|encryption[_\-\s]?key|master[_\-\s]?key|account[_\-\s]?key|shared[_\-\s]?access[_\-\s]?key|token|sig)["']?\s*[:=]\s*["']?([A-Za-z0-9_\-./+=%]{16,})"#,
            )?,
            bearer: Regex::new(r"(?i-u)(bearer|basic)\s+([A-Za-z0-9\-._~+/]{12,}=*)")?,
            what3words: Regex::new(r"///\p{Ll}{2,20}\.\p{Ll}{2,20}\.\p{Ll}{2,20}")?,
            coord_labelled: Regex::new(
                r"(?i-u)(?-u:\b)lat(?:itude)?\s*[:=]?\s*(-?\d{1,2}\.\d{3,})\s*[,;/]?\s*(?:lon|lng|long|longitude)\s*[:=]?\s*(-?\d{1,3}\.\d{3,})",
            )?,
            door_value: Regex::new(r"(?-u:\b)(?:\d(?:[\-.]\d){2,9}|[A-Za-z]{0,2}\d[A-Za-z0-9]{2,9})(?-u:\b)")?,
            upi: Regex::new(
                r"(?i)(?-u:\b)[a-z0-9][a-z0-9._\-]{2,}@(?:ok(?:axis|sbi|hdfcbank|icici)|ybl|ibl|axl|paytm|upi|apl|yapl|icici|sbi|hdfcbank|axisbank|axisb|kotak|barodampay|idfcbank|idfcfirst|rbl|yesbank|freecharge|jupiteraxis|pingpay|waicici|wahdfcbank|fbl|federal|indus|aubank|pnb|boi|cnrb|unionbank)(?-u:\b)",
            )?,
            spelled_year: Regex::new(
                r"(?i)(?-u:\b)(?:(?:nineteen|eighteen)[\s\-]+(?:hundred(?:[\s\-]+and)?[\s\-]+[a-z]+|oh[\s\-]+[a-z]+|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s\-]+(?:one|two|three|four|five|six|seven|eight|nine))?)|two[\s\-]+thousand(?:[\s\-]+and)?(?:[\s\-]+(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen))?)(?-u:\b)",
            )?,
            month_word: Regex::new(
                r"(?i)(?-u:\b)(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)(?:[a-z]*)(?-u:\b)",
            )?,
            otp_value: Regex::new(r"(?-u:\b)\d{3,4}[ \-]?\d{2,4}(?-u:\b)|(?-u:\b)\d{4,10}(?-u:\b)")?,
            code_line: Regex::new(r"^\s*(?:[0-9A-Za-z]{4,6}[ \-][0-9A-Za-z]{4,6}|[0-9A-Za-z]{8,12})\s*$")?,
            seed_run: Regex::new(
                r"(?:(?-u:\b)[a-z]{3,8}(?:[ ,]+|\s*\n\s*|\s+\d{1,2}[.)]\s+)){11,23}[a-z]{3,8}(?-u:\b)",
            )?,
            coord_pair: Regex::new(r"(?-u:\b)(-?\d{1,2}\.\d{4,})\s*[,;/ ]\s*(-?\d{1,3}\.\d{4,})(?-u:\b)")?,
            coord_hemi: Regex::new(
                r"(?i)(?-u:\b)(\d{1,2}(?:\.\d+)?)\s*°?\s*([NS])[\s,;]+(\d{1,3}(?:\.\d+)?)\s*°?\s*([EWO])(?-u:\b)",
            )?,
            coord_dms: Regex::new(r#"\d{1,3}°\s*\d{1,2}['′]\s*\d{1,2}(?:[.,]\d+)?\s*(?:"|″|'')?\s*[NSEWO]"#)?,
            plus_code: Regex::new(r"(?-u:\b)[23456789CFGHJMPQRVWX]{4,8}\+[23456789CFGHJMPQRVWX]{2,3}(?-u:\b)")?,
            addr_en: Regex::new(&format!(
                r"(?-u:\b)\d{{1,6}}[A-JL-Za-jl-z]?(?:[/\-]\d{{1,4}})?,?\s+(?:[NSEW]\.?\s+)?(?:\p{{Lu}}[\p{{L}}'\-]*\.?\s+){{1,4}}{street_en}(?-u:\b)"
            ))?,
            addr_us_zip: Regex::new(&format!(
                r"(?:\p{{Lu}}[\p{{L}}.'\-]*(?:[ \t]+\p{{Lu}}[\p{{L}}.'\-]*){{0,3}},\s*|,\s*|(?-u:\b)(?:APO|FPO|DPO)\s+){states}\s+\d{{5}}(?:-\d{{4}})?(?-u:\b)"
            ))?,
            addr_uk_postcode: Regex::new(r"(?-u:\b)(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}(?-u:\b)")?,
            addr_po_box: Regex::new(
                r"(?i)(?-u:\b)(?:(?:p\.?\s?o\.?\s+box|postfach|apartado de correos|boîte postale)\s*\d{1,6}|(?:psc|unit|cmr)\s+\d{3,5},\s*box\s+\d{3,5}|(?:rr|r\.r\.|rural\s+route|hc|highway\s+contract(?:\s+route)?|star\s+route)\s*\d{1,4},?\s*(?:box|bx)\s*\d{1,5}|rural\s+route\s+\d{1,4})(?-u:\b)",
            )?,
            addr_es: Regex::new(&format!(
                r"{}\s+(?:(?:de|del|de la|de los|de las)\s+)?\p{{Lu}}[\p{{L}}'\-]*(?:\s+(?:(?:de|del|la|las|los|y)\s+)?\p{{Lu}}[\p{{L}}'\-]*){{0,4}},?\s*(?:n\.?º\s*|nº\s*|número\s*|no\.?\s*)?\d{{1,4}}(?-u:\b)",
                lx::STREET_ES
            ))?,
            addr_de: Regex::new(&format!(
                r"\p{{Lu}}[\p{{L}}\-]*?(?i:{})\s+\d{{1,4}}\s?[a-zA-Z]?(?:\s?/\s?\d{{1,4}})?(?-u:\b)",
                lx::STREET_DE
            ))?,
            addr_de_prep: Regex::new(
                r"(?-u:\b)(?:Am|An der|Auf dem|Auf der|Im|Zum|Zur|In der|Unter den|Hinter der)\s+\p{Lu}[\p{L}\-]+\s+\d{1,4}[a-z]?(?-u:\b)",
            )?,
            addr_fr: Regex::new(&format!(
                r"(?i)(?-u:\b)\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+{}\s+(?:(?:de|du|des|d'|la|le|l')\s*)*\p{{L}}[\p{{L}}'\-]*(?:\s+(?:(?:de|du|des|la|le)\s+)?(?-i:\p{{Lu}})[\p{{L}}'\-]*){{0,4}}",
                lx::STREET_FR
            ))?,
            addr_zh: Regex::new(r"\p{Han}{1,12}(?:路|街|大道|巷|胡同|道)\s*(?:\d+\s*号|[A-Za-z0-9]\s*座|\d+\s*弄)")?,
            addr_zh_admin: Regex::new(
                r"\p{Han}{1,8}(?:省|自治区|特别行政区|市)\p{Han}{1,10}(?:市|县|区|州)\p{Han}{1,14}(?:路|街|道|村|镇|乡|巷)",
            )?,
            addr_in_house: Regex::new(
                r"(?i-u)(?-u:\b)(?:h\.?\s?no\.?|house\s+no\.?|flat\s+no\.?|plot\s+no\.?|door\s+no\.?|ghar\s+no\.?)\s*#?\s*\d[\d/\-]*",
            )?,
            addr_in_pin: Regex::new(r"\p{Lu}\p{Ll}+(?:\s\p{Lu}\p{Ll}+)?(?:-| - |\s)[1-9]\d{2}\s?\d{3}(?-u:\b)")?,
            postcode_city: Regex::new(r"(?-u:\b)\d{5}\s+\p{Lu}[\p{L}\-']+(?:[ \-]\p{Lu}[\p{L}\-']+){0,3}")?,
            date: Regex::new(&date)?,
            fr_rib: Regex::new(
                r"(?i)(?-u:\b)(\d{5})[ .\-]?(\d{5})[ .\-]?([0-9a-z]{11})[ .\-]?(?:\(?(?:clé|cle|key)(?:\s+rib)?\)?\s*[:=]?\s*)?(\d{2})(?-u:\b)",
            )?,
            sg_nric: Regex::new(r"(?-u:\b)[STFG]\d{7}[A-Z](?-u:\b)")?,
            mx_curp: Regex::new(
                r"(?-u:\b)[A-Z][AEIOUX][A-Z]{2}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[HMX][A-Z]{5}[0-9A-Z]\d(?-u:\b)",
            )?,
            uk_licence: Regex::new(
                r"(?-u:\b)[A-Z9]{5}\d(?:[05][1-9]|[16][0-2])(?:0[1-9]|[12]\d|3[01])\d[A-Z9]{2}\d[A-Z0-9]{2}(?:\d{2})?(?-u:\b)",
            )?,
            cli_password: Regex::new(concat!(
                r#"(?-u:\b)(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|mysqlsh)(?-u:\b)[^\n|;&]{0,120}?\s-p(?:'([^'\n]{3,64})'|"([^"\n]{3,64})"|([^\s'"\-<$][^\s]{2,63}))"#,
                r#"|(?-u:\b)sshpass\s+-p\s*(?:'([^'\n]{3,64})'|"([^"\n]{3,64})"|([^\s'"\-<$][^\s]{2,63}))"#,
                r#"|\s--password[= ](?:'([^'\n]{3,64})'|"([^"\n]{3,64})"|([^\s'"\-<$][^\s]{2,63}))"#,
            ))?,
            addr_jp: Regex::new(concat!(
                r"〒\s?\d{3}[\-－ー]?\d{4}",
                r"|(?:東京都|北海道|京都府|大阪府|\p{Han}{2,3}県)\p{Han}{1,6}?[市区郡町村]\p{Han}{0,8}?\d{1,4}(?:丁目|番地?|[\-－])",
                r"|(?-u:\b)\d{1,4}(?:-\d{1,4}){1,2},?\s+(?:\p{Lu}\p{Ll}+(?:-(?:cho|machi))?,?\s+)?\p{Lu}\p{Ll}+-(?:ku|shi|gun|cho|machi)(?-u:\b)",
                r"|(?-u:\b)\p{Lu}\p{Ll}+-(?:ku|shi|gun),?\s+\p{Lu}\p{Ll}+(?:-(?:to|fu|ken))?,?\s+\d{3}-\d{4}(?-u:\b)",
            ))?,
            addr_kr: Regex::new(
                r"[가-힣]{2,}(?:특별시|광역시|특별자치시|시|도)\s*[가-힣]{1,}(?:구|군|시)\s*[가-힣0-9]{1,}(?:로|길)\s*\d+",
            )?,
        })
    }

    /// Runs every regex detector.
    pub(crate) fn detect(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        self.emails(text, out);
        self.ibans(text, ctx, out);
        self.national_ids(text, ctx, out);
        self.context_ids(text, ctx, out);
        self.credentials(text, ctx, out);
        self.locations(text, ctx, out);
        self.addresses(text, ctx, out);
        self.dates_of_birth(text, ctx, out);
        self.regional(text, ctx, out);
    }

    /// Regional formats with a check digit or a distinctive layout: French RIB, Singapore NRIC,
    /// Mexican CURP, UK driving licence, Japanese and Korean addresses; and a password on a
    /// database or ssh command line.
    fn regional(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        for c in self.fr_rib.captures_iter(text) {
            let (Some(all), Some(b), Some(g), Some(a), Some(k)) = (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4))
            else {
                continue;
            };
            if checksum::fr_rib(b.as_str(), g.as_str(), &a.as_str().to_ascii_uppercase(), k.as_str()) {
                out.add(all.start(), all.end(), Category::BankAccount, 0.95);
            }
        }
        for m in near_digits(&self.sg_nric, text, ctx) {
            if checksum::sg_nric(m.as_str()) && !ctx.not_personal_before(m.start()) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.95);
            }
        }
        for m in near_digits(&self.mx_curp, text, ctx) {
            if checksum::mx_curp(m.as_str()) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.97);
            }
        }
        for m in near_digits(&self.uk_licence, text, ctx) {
            if !ctx.not_personal_before(m.start()) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.9);
            }
        }
        for c in self.cli_password.captures_iter(text) {
            let Some(v) = (1..=9).find_map(|i| c.get(i)) else { continue };
            if is_placeholder(v.as_str()) || v.as_str().starts_with("${") || v.as_str().starts_with('%') {
                continue;
            }
            out.add(v.start(), v.end(), Category::Credential, 0.9);
        }
        if ctx.has_cjk || text.contains("-ku") || text.contains("-shi") || text.contains("-gun") {
            for m in self.addr_jp.find_iter(text) {
                out.add(m.start(), m.end(), Category::PostalAddress, 0.9);
            }
        }
        if !text.is_ascii() {
            for m in self.addr_kr.find_iter(text) {
                out.add(m.start(), m.end(), Category::PostalAddress, 0.9);
            }
        }
    }

    fn emails(&self, text: &str, out: &mut Out) {
        for m in self.upi.find_iter(text) {
            // Not the start of an email address at a real domain ("x@paytm.com").
            if text[m.end()..].starts_with('.') && text[m.end() + 1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                continue;
            }
            out.add(m.start(), m.end(), Category::BankAccount, 0.85);
        }
        for m in self.email.find_iter(text) {
            let s = m.as_str();
            let Some((local, domain)) = s.rsplit_once('@') else { continue };
            let domain = domain.to_ascii_lowercase();
            let local = local.to_ascii_lowercase();
            // RFC 2606 / 6761 reserved names are documentation, not people.
            let reserved = ["example.com", "example.org", "example.net"].contains(&domain.as_str())
                || domain.starts_with("example.")
                || [".example", ".test", ".invalid", ".localhost", ".example.com"].iter().any(|t| domain.ends_with(t))
                || domain == "localhost";
            if reserved || ROLE_LOCAL.contains(&local.as_str()) {
                out.residual(0.15);
                continue;
            }
            out.add(m.start(), m.end(), Category::Email, 0.97);
        }
        // A rejected candidate ("me at jen.doe82 (at) gmail (dot) com": "me" at "jen.doe82") must
        // not hide the real address after it: the search resumes after the rejected "at".
        let mut pos = 0usize;
        while pos < text.len() {
            let Some(c) = self.email_obf.captures_at(text, pos) else { break };
            let (Some(all), Some(local), Some(at), Some(domain)) = (c.get(0), c.get(1), c.get(2), c.get(3)) else {
                break;
            };
            pos = if all.end() > pos { at.end().max(pos + 1) } else { pos + 1 };
            while pos < text.len() && !text.is_char_boundary(pos) {
                pos += 1;
            }
            let at_s = at.as_str().trim().to_lowercase();
            let dom = domain.as_str().to_lowercase();
            let spoken_dot = |s: &str| {
                s.contains("dot")
                    || s.contains("punto")
                    || s.contains("punkt")
                    || s.contains("point")
                    || s.contains('点')
            };
            let obfuscated = at_s != "@" || spoken_dot(&dom) || spoken_dot(&local.as_str().to_lowercase());
            if !obfuscated {
                continue; // a plain email, handled above
            }
            let labels: Vec<&str> = dom
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
                .filter(|l| !l.is_empty() && !["dot", "punto", "punkt", "point"].contains(l))
                .collect();
            let (Some(first), Some(tld)) = (labels.first(), labels.last()) else { continue };
            // "wenjie.koh.93 at gmail": a mail provider without its ending, after an address-like
            // local part (digits, a dot or an underscore).
            let local_l = local.as_str();
            let addressy = local_l.chars().any(|ch| ch.is_ascii_digit() || ch == '_' || ch == '.')
                || spoken_dot(&local_l.to_lowercase());
            if labels.len() == 1 && MAIL_PROVIDERS.contains(first) && addressy && local_l.len() >= 4 {
                out.add(all.start(), all.end(), Category::Email, 0.85);
                pos = pos.max(all.end());
                continue;
            }
            if !TLDS.contains(tld) || labels.len() < 2 {
                continue;
            }
            // A spoken " at " in prose ("look at this dot com") needs a mail provider, an
            // address-like local part or a bracketed "[dot]"; "arroba"/"arobase"/"[at]" need nothing.
            let bracketed = !matches!(at_s.as_str(), "at" | "chez" | "@")
                || all.as_str().contains("[dot]")
                || all.as_str().contains("(dot)")
                || all.as_str().contains("{dot}");
            if !bracketed && at_s != "@" && !MAIL_PROVIDERS.contains(first) && !addressy {
                continue;
            }
            out.add(all.start(), all.end(), Category::Email, 0.9);
            pos = pos.max(all.end());
        }
    }

    fn ibans(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        for m in near_digits(&self.iban, text, ctx) {
            // Compact the match, then try the registry length for its country (the regex may run
            // into a following word).
            let mut compact = String::new();
            let mut ends = Vec::new(); // byte end in `text` of each compact char
            for (i, ch) in m.as_str().char_indices() {
                if ch.is_ascii_alphanumeric() {
                    compact.push(ch.to_ascii_uppercase());
                    ends.push(m.start() + i + 1);
                }
            }
            let mut found = false;
            for len in (15..=compact.len().min(34)).rev() {
                let cand = &compact[..len];
                if checksum::iban(cand) {
                    let end = ends.get(len - 1).copied().unwrap_or(m.end());
                    if TEST_IBANS.contains(&cand) && ctx.doc_near(m.start(), end) {
                        out.residual(0.2);
                    } else {
                        out.add(m.start(), end, Category::Iban, 0.97);
                    }
                    found = true;
                    break;
                }
            }
            // A separator between the country code and the check digits ("ES-39-0049-...") is
            // accepted only for a valid IBAN (else "up to 30 alphanumerics" would be one).
            let split_head = matches!(m.as_str().as_bytes().get(2), Some(b' ' | b'-'));
            if !found && !split_head && ctx.iban_word_near(m.start()) && compact.len() >= 15 {
                // Labelled as an IBAN but the check digits fail: likely a typo; fail closed.
                out.add(m.start(), m.end(), Category::Iban, 0.6);
            }
        }
    }

    fn national_ids(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        let compact = |s: &str| -> String {
            s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase()
        };
        for m in near_digits(&self.nino, text, ctx) {
            if checksum::uk_nino(&compact(m.as_str())) && !ctx.not_personal_before(m.start()) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.9);
            }
        }
        for m in near_digits(&self.dni, text, ctx).into_iter().chain(near_digits(&self.nie, text, ctx)) {
            if checksum::es_dni(&compact(m.as_str())) && !ctx.not_personal_before(m.start()) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.95);
            }
        }
        for m in near_digits(&self.cf, text, ctx) {
            if checksum::it_codice_fiscale(&compact(m.as_str())) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.97);
            }
        }
        for m in near_digits(&self.cn_id, text, ctx) {
            if checksum::cn_resident_id(&compact(m.as_str())) && !ctx.not_personal_before(m.start()) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.97);
            }
        }
        for m in near_digits(&self.nir, text, ctx) {
            if checksum::fr_nir(&compact(m.as_str())) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.97);
            }
        }
        for m in near_digits(&self.pan, text, ctx) {
            let score = if ctx.gov_id.near(m.start(), m.end(), 40, 10) { 0.95 } else { 0.8 };
            out.add(m.start(), m.end(), Category::GovernmentId, score);
        }
        for m in near_digits(&self.ausweis, text, ctx) {
            let s = m.as_str();
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            if digits < 3 {
                continue;
            }
            if ctx.gov_id.near(m.start(), m.end(), 50, 0) || (s.len() == 10 && checksum::icao_check(s) && digits >= 4) {
                out.add(m.start(), m.end(), Category::GovernmentId, 0.9);
            }
        }
    }

    /// Passport, driver-licence and generic ID numbers after their label.
    fn context_ids(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        for (hits, min_digits) in [(&ctx.passport, 4usize), (&ctx.licence, 4), (&ctx.gov_id, 5), (&ctx.ssn, 4)] {
            for &(_, e) in &hits.0 {
                let window_end = floor_char(text, (e + 48).min(text.len()));
                let Some(window) = text.get(e..window_end) else { continue };
                // Skip a short connector ("number", "is", ":", "ist", "是") before the value.
                for m in self.id_token.find_iter(window).take(4) {
                    let tok = m.as_str();
                    let digits = tok.bytes().filter(u8::is_ascii_digit).count();
                    if digits >= min_digits && !looks_like_date(tok) {
                        out.add(e + m.start(), e + m.end(), Category::GovernmentId, 0.85);
                        break;
                    }
                }
                // A document number right after its label may be mostly letters (German ID cards:
                // "Personalausweisnummer: LZ6311T47"): an uppercase code with a digit, 6-12 long.
                let head = window.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '#' | '-' | '.'));
                let skipped = window.len() - head.len();
                let code: String = head.chars().take_while(char::is_ascii_alphanumeric).collect();
                let letters_upper = code.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
                if (6..=12).contains(&code.len()) && letters_upper && code.bytes().any(|b| b.is_ascii_digit()) {
                    out.add(e + skipped, e + skipped + code.len(), Category::GovernmentId, 0.8);
                }
            }
        }
    }

    fn credentials(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        let first_new = out.findings.len();
        for m in self.secret_prefix.find_iter(text) {
            let s = m.as_str();
            let distinct = s.bytes().collect::<std::collections::HashSet<u8>>().len();
            if s.contains("EXAMPLE") || s.contains("example") || distinct < 8 {
                out.residual(0.2);
                continue;
            }
            // Published examples (AWS's, Stripe's, jwt.io's token) are nobody's secret.
            if DOC_SECRETS.contains(&s) {
                out.residual(0.2);
                continue;
            }
            let end = if s.starts_with("-----BEGIN") { pem_end(text, m.end()) } else { m.end() };
            out.add(m.start(), end, Category::Credential, 0.97);
        }
        for c in self.conn_str.captures_iter(text) {
            let (Some(all), Some(user), Some(pw)) = (c.get(0), c.get(1), c.get(2)) else { continue };
            if is_placeholder(pw.as_str()) || (user.as_str() == "user" && pw.as_str() == "pass") {
                out.residual(0.2);
                continue;
            }
            out.add(all.start(), all.end(), Category::Credential, 0.95);
        }
        for c in self.secret_assign.captures_iter(text) {
            let Some(v) = c.get(1) else { continue };
            if high_entropy_secret(v.as_str()) {
                out.add(v.start(), v.end(), Category::Credential, 0.85);
            }
        }
        for c in self.bearer.captures_iter(text) {
            let (Some(kind), Some(v)) = (c.get(1), c.get(2)) else { continue };
            let basic = kind.as_str().eq_ignore_ascii_case("basic");
            // "Basic dXNlcjpwYXNz": base64 of "user:password" (only after "Authorization").
            let basic_auth = basic
                && v.len() >= 12
                && text[..kind.start()]
                    .to_ascii_lowercase()
                    .trim_end()
                    .trim_end_matches(':')
                    .ends_with("authorization")
                && !is_placeholder(v.as_str());
            if !basic && (high_entropy_secret(v.as_str()) || v.as_str().starts_with("eyJ")) || basic_auth {
                out.add(v.start(), v.end(), Category::Credential, 0.9);
            }
        }
        self.one_time_codes(text, ctx, out);
        self.seed_phrases(text, ctx, out);
        for m in self.password_kw.find_iter(text) {
            if !super::context::on_boundaries(text, m.start(), m.end()) {
                continue;
            }
            // A variable's name, not a password: "$POSTGRES_PASSWORD", "${DB_PASSWORD}", "%PWD%".
            let ident_start = text[..m.start()]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + text[i..].chars().next().map_or(1, char::len_utf8));
            if text[..ident_start].ends_with(['$', '%', '{']) {
                continue;
            }
            let kw = m.as_str().to_lowercase();
            let is_pin = kw.starts_with("pin")
                || kw.starts_with("code de")
                || kw.starts_with("code cb")
                || kw.starts_with("code secret")
                || kw.starts_with("code confidentiel")
                || kw == "geheimzahl"
                || kw == "nip";
            if let Some((s, e)) = password_value(text, m.end(), is_pin) {
                // A password in a story, a sketch or a game ("in my D&D campaign the password to
                // the vault is 'Obsidian Crown'") is a prop, unless the writer is in it.
                let (ss, se) = sentence_of(&ctx.sents, s);
                if ctx.fiction.within(ss, se) && (!ctx.first_person_at(s) || ctx.fiction_possessive_only(ss, se)) {
                    out.residual(0.3);
                    continue;
                }
                out.add(s, e, Category::Credential, 0.85);
            }
        }
        // A value under a secret *reference* in a manifest ("valueFrom: secretKeyRef: name:
        // db-creds, key: password") names where the secret is kept, not the secret; a published
        // example token after "token:" is nobody's.
        let refs = ["secretKeyRef", "valueFrom", "secretName", "existingSecret", "secretRef", "fromSecret"];
        let mut k = first_new;
        while k < out.findings.len() {
            let f = out.findings[k];
            let lo = floor_char(text, f.start.saturating_sub(120));
            let published = DOC_SECRETS.iter().any(|d| text[f.start..f.end].contains(d));
            if f.cat == Category::Credential
                && (published
                    || placeholder_secret(&text[f.start..f.end])
                    || refs.iter().any(|r| text[lo..f.start].contains(r)))
            {
                out.findings.remove(k);
                out.residual(0.2);
            } else {
                k += 1;
            }
        }
    }

    /// One-time, verification and recovery codes: digits right after (or just before) their
    /// label ("verification code is 482917", "OTP 739204", "验证码739204", "482917 is your code"),
    /// or after a bare "code" in a sentence about a text message ("the bank texted me code 4829").
    fn one_time_codes(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        let value_after = |from: usize, reach: usize| -> Option<(usize, usize)> {
            let end = floor_char(text, (from + reach).min(text.len()));
            let window = text.get(from..end)?;
            let m = self.otp_value.find(window)?;
            let v = m.as_str();
            // A year ("in 2024") is not a code.
            if v.len() == 4 && (v.starts_with("19") || v.starts_with("20")) {
                return None;
            }
            // Only label-like words may stand between the label and the value.
            let gap = &window[..m.start()];
            let words = gap.split_whitespace().count();
            if words > 4 || gap.contains(['.', '?', '!', '\n']) {
                return None;
            }
            Some((from + m.start(), from + m.end()))
        };
        for &(s, e) in &ctx.otp.0 {
            // "recovery codes for my account, ...: 8431 2290, 1176 5094": a list follows.
            let plural = text[s..e].to_ascii_lowercase().ends_with("codes");
            if plural {
                let end = floor_char(text, (e + 160).min(text.len()));
                let window = &text[e..end];
                let stop = window.find(['.', '?', '!', '\n']).unwrap_or(window.len());
                if let Some(m) = self.otp_value.find(&window[..stop]) {
                    out.add(e + m.start(), e + m.end(), Category::Credential, 0.85);
                    continue;
                }
                // Or one per line below the label, as services print them ("recovery codes:\n
                // 1bdb4-efe55\n90ada-3c2d2", "Backup codes\n8431 2290"): letters and digits, one or
                // two groups of 4-6 (or 8-12 in one), at least one digit.
                if window[..stop].trim_start_matches([':', ' ', '\t']).is_empty() && stop < window.len() {
                    let below = &window[stop + 1..];
                    let line = below.lines().next().unwrap_or("");
                    if let Some(m) = self.code_line.find(line) {
                        if m.as_str().bytes().any(|b| b.is_ascii_digit()) {
                            let at = e + stop + 1 + m.start();
                            out.add(at, at + m.len(), Category::Credential, 0.85);
                            continue;
                        }
                    }
                }
            }
            if let Some((vs, ve)) = value_after(e, 48) {
                out.add(vs, ve, Category::Credential, 0.85);
                continue;
            }
            // "482917 is your verification code"
            let lo = floor_char(text, s.saturating_sub(40));
            if let Some(m) = text.get(lo..s).and_then(|w| self.otp_value.find_iter(w).last()) {
                let between = &text[lo + m.end()..s];
                // The tail of a longer run of digit groups (a test card "4111 1111 1111 1111")
                // is not a code.
                let tail_of_run = text[..lo + m.start()].trim_end().ends_with(|c: char| c.is_ascii_digit());
                if !tail_of_run && between.split_whitespace().count() <= 4 && !between.contains(['.', '?', '!', '\n']) {
                    out.add(lo + m.start(), lo + m.end(), Category::Credential, 0.85);
                }
            }
        }
        // Door, gate and alarm codes: "le code de la porte c'est 4B719", "gate code is #4821".
        for &(_, e) in &ctx.door_code.0 {
            let end = floor_char(text, (e + 70).min(text.len()));
            let Some(window) = text.get(e..end) else { continue };
            let Some(m) = self.door_value.find(window) else { continue };
            let v = m.as_str();
            let digits = v.bytes().filter(u8::is_ascii_digit).count();
            let year = v.len() == 4 && (v.starts_with("19") || v.starts_with("20"));
            let gap = &window[..m.start()];
            // "alarm code my manager set for the back door is 5-9-0-3-1": a longer gap when a
            // connector ends it.
            let words = gap.split_whitespace().count();
            let connector = gap
                .split_whitespace()
                .last()
                .is_some_and(|w| PASSWORD_CONNECTORS.contains(&w.to_lowercase().as_str()) || w.ends_with(':'));
            let gap_ok = words <= 4 || words <= 9 && connector;
            if digits >= 3 && !year && gap_ok && !gap.contains(['.', '?', '!', '\n']) {
                out.add(e + m.start(), e + m.end(), Category::Credential, 0.8);
            }
        }
        for &(_, e) in &ctx.code_word.0 {
            let (ss, se) = sentence_of(&ctx.sents, e);
            if !ctx.sms.within(ss, se) {
                continue;
            }
            if let Some((vs, ve)) = value_after(e, 24) {
                let digits = text[vs..ve].bytes().filter(u8::is_ascii_digit).count();
                if (4..=8).contains(&digits) {
                    out.add(vs, ve, Category::Credential, 0.8);
                }
            }
        }
    }

    /// A wallet recovery (seed) phrase: twelve to twenty-four lowercase words without any
    /// function word, in a text that speaks of a seed/recovery phrase or a wallet.
    fn seed_phrases(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        if ctx.seed.0.is_empty() {
            return;
        }
        const FUNCTION_WORDS: &[&str] = &[
            "the", "and", "for", "you", "are", "was", "that", "this", "with", "have", "from", "but", "not", "what",
            "can", "will", "they", "them", "their", "there", "then", "than", "when", "which", "who", "how", "why",
            "its", "his", "her", "she", "him", "our", "your", "just", "been", "were", "has", "had", "does", "did",
            "into", "out", "les", "des", "une", "est", "pour", "que", "qui", "dans", "los", "las", "por", "para",
            "una", "con", "der", "die", "das", "und", "ist", "mit", "ein", "eine", "nicht", "hai", "hain", "aur",
        ];
        for m in self.seed_run.find_iter(text) {
            let words: Vec<&str> =
                m.as_str().split(|c: char| !c.is_ascii_lowercase()).filter(|w| !w.is_empty()).collect();
            if words.len() >= 12 && !words.iter().any(|w| FUNCTION_WORDS.contains(w)) {
                out.add(m.start(), m.end(), Category::Credential, 0.85);
            }
        }
    }

    fn locations(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        // A street corner where the writer is now ("I'm at the corner of 5th Ave and Pine St").
        for &(s, e) in &ctx.intersection.0 {
            let (ss, se) = sentence_of(&ctx.sents, s);
            if !(ctx.present.within(ss, se) && ctx.first_person_at(s)) {
                continue;
            }
            let end = floor_char(text, (e + 80).min(se.max(e)));
            let window = &text[e..end];
            let lower = window.to_lowercase();
            let joined = [" and ", " & ", " y ", " con ", " et ", " und ", " / ", " x ", " with "]
                .iter()
                .filter_map(|c| lower.find(c))
                .min();
            if let Some(j) = joined {
                let stop = floor_char(text, (e + j + 40).min(end));
                out.add(s, stop, Category::Location, 0.8);
                continue;
            }
            let word = text[s..e].to_lowercase();
            // "Plaza Mayor esquina con Calle de Toledo": the word itself joins the two streets.
            let joins = ["esquina con", "corner with", "ecke", "angle", "coin"].iter().any(|w| word.ends_with(w))
                && window.trim_start().starts_with(|c: char| c.is_uppercase());
            // "漕溪北路和南丹东路路口": in Chinese the streets come before the word.
            let lo = floor_char(text, s.saturating_sub(36).max(ss));
            let before = &text[lo..s];
            let zh_joined = word.ends_with('口')
                && (before.contains('和') || before.contains('与') || before.contains('跟'))
                && before.contains('路');
            if joins || zh_joined {
                let stop = floor_char(text, (e + 40).min(end));
                out.add(lo.min(s), stop, Category::Location, 0.8);
            }
        }
        for m in self.what3words.find_iter(text) {
            out.add(m.start(), m.end(), Category::Location, 0.9);
        }
        for c in captures_near_digits(&self.coord_labelled, text, ctx) {
            let (Some(all), Some(a), Some(b)) = (c.get(0), c.get(1), c.get(2)) else { continue };
            let (Ok(lat), Ok(lon)) = (a.as_str().parse::<f64>(), b.as_str().parse::<f64>()) else { continue };
            if lat.abs() <= 90.0 && lon.abs() <= 180.0 {
                out.add(all.start(), all.end(), Category::Location, 0.9);
            }
        }
        for c in captures_near_digits(&self.coord_pair, text, ctx) {
            let (Some(all), Some(a), Some(b)) = (c.get(0), c.get(1), c.get(2)) else { continue };
            let (Ok(lat), Ok(lon)) = (a.as_str().parse::<f64>(), b.as_str().parse::<f64>()) else { continue };
            if lat.abs() > 90.0 || lon.abs() > 180.0 || (lat == 0.0 && lon == 0.0) {
                continue;
            }
            let (ss, se) = sentence_of(&ctx.sents, all.start());
            let located = ctx.location.within(ss, se)
                || text[..all.start()].ends_with('@')
                || text[..all.start()].ends_with('=')
                || text[..all.start()].ends_with("geo:");
            if ctx.not_coord.within(ss, se) && !located {
                out.residual(0.3);
                continue;
            }
            out.add(all.start(), all.end(), Category::Location, if located { 0.95 } else { 0.85 });
        }
        for c in captures_near_digits(&self.coord_hemi, text, ctx) {
            let (Some(all), Some(a), Some(b)) = (c.get(0), c.get(1), c.get(3)) else { continue };
            let decimals = |s: &str| s.split('.').nth(1).map_or(0, str::len);
            if decimals(a.as_str()) >= 2 || decimals(b.as_str()) >= 2 {
                out.add(all.start(), all.end(), Category::Location, 0.9);
            }
        }
        for m in near_digits(&self.coord_dms, text, ctx) {
            out.add(m.start(), m.end(), Category::Location, 0.9);
        }
        for m in self.plus_code.find_iter(text) {
            out.add(m.start(), m.end(), Category::Location, 0.85);
        }
    }

    fn addresses(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        const PUBLIC_ADDRESSES: &[&str] = &[
            "10 downing street",
            "1600 pennsylvania avenue",
            "221b baker street",
            "1 infinite loop",
            "1 apple park way",
            "350 fifth avenue",
            "1600 amphitheatre parkway",
            "55 rue du faubourg",
            // Sights, offices of state and fiction's addresses that everybody quotes.
            "3764 elvis presley",
            "4 privet drive",
            "12 grimmauld place",
            "31 spooner street",
            "124 conch street",
            "1313 mockingbird lane",
            "177a bleecker street",
            "10 downing st",
            "1600 pennsylvania ave",
            "221b baker st",
            "20 w 34th st",
            "20 west 34th street",
            "1 microsoft way",
            "1 hacker way",
            "5 avenue anatole france",
            "11 wall street",
            "2 macquarie street",
            "1 rocket road",
        ];
        let with_digits = [
            &self.addr_en,
            &self.addr_es,
            &self.addr_de,
            &self.addr_de_prep,
            &self.addr_fr,
            &self.addr_in_house,
            &self.addr_us_zip,
            &self.addr_po_box,
        ];
        let mut strong: Vec<regex::Match<'_>> = with_digits.iter().flat_map(|re| near_digits(re, text, ctx)).collect();
        if ctx.has_cjk {
            strong.extend(self.addr_zh.find_iter(text).chain(self.addr_zh_admin.find_iter(text)));
        }
        {
            for m in strong {
                // The famous address itself, or the town/ZIP line right after it ("1600
                // Pennsylvania Avenue NW, Washington, DC 20500").
                let lower = m.as_str().to_lowercase();
                let before = text[floor_char(text, m.start().saturating_sub(48))..m.start()].to_lowercase();
                if PUBLIC_ADDRESSES.iter().any(|p| lower.starts_with(p) || before.contains(p)) {
                    out.residual(0.2);
                    continue;
                }
                out.add(m.start(), m.end(), Category::PostalAddress, 0.85);
            }
        }
        // A "12345 Town" postcode line right after a street line belongs to the address.
        let mut street_ends: Vec<usize> = out.spans_of(Category::PostalAddress).iter().map(|&(_, e)| e).collect();
        street_ends.sort_unstable();
        for m in near_digits(&self.postcode_city, text, ctx) {
            // The latest street end at or before the postcode (binary search: linear overall).
            let k = street_ends.partition_point(|&e| e <= m.start());
            if k > 0 && m.start() - street_ends[k - 1] <= 60 {
                out.add(m.start(), m.end(), Category::PostalAddress, 0.85);
            }
        }
        // Weaker signals: a UK postcode or an Indian "City-PIN" after a comma or an address word.
        for re in [&self.addr_uk_postcode, &self.addr_in_pin] {
            for m in near_digits(re, text, ctx) {
                let before = text[..m.start()].trim_end();
                let after_comma = before.ends_with(',') || before.ends_with('，');
                let hyphen_pin = m.as_str().contains('-');
                // The postcodes of the Palace, Downing Street and Parliament are nobody's home.
                let before_lower = text[floor_char(text, m.start().saturating_sub(48))..m.start()].to_lowercase();
                let public = matches!(m.as_str(), "SW1A 1AA" | "SW1A 2AA" | "SW1A 0AA" | "SW1A1AA" | "SW1A2AA")
                    || PUBLIC_ADDRESSES.iter().any(|p| before_lower.contains(p));
                if public {
                    out.residual(0.2);
                } else if after_comma || hyphen_pin || ctx.address.near(m.start(), m.end(), 80, 0) {
                    out.add(m.start(), m.end(), Category::PostalAddress, 0.75);
                }
            }
        }
    }

    fn dates_of_birth(&self, text: &str, ctx: &Ctx, out: &mut Out) {
        // "DOB is the 4th of July nineteen ninety", "born on the twenty-ninth of feb, nineteen
        // ninety-two": a month name, then a year in words, near a birth word.
        if !ctx.dob.0.is_empty() {
            for m in self.spelled_year.find_iter(text) {
                let lo = floor_char(text, m.start().saturating_sub(40));
                let (ss, se) = sentence_of(&ctx.sents, m.start());
                let public = ctx.public.within(ss, se) && !ctx.first_person_at(m.start());
                if self.month_word.is_match(&text[lo..m.start()]) && ctx.dob.near(m.start(), m.end(), 80, 30) && !public
                {
                    out.add(lo, m.end(), Category::DateOfBirth, 0.85);
                }
            }
        }
        for m in near_digits(&self.date, text, ctx) {
            // A birthday word earlier in the text and a year long past: a birth date in a list
            // ("Birthdays: - Ana Ruiz — 1988-11-03"); this year's party date is not.
            let past_year = m
                .as_str()
                .as_bytes()
                .windows(4)
                .filter_map(|w| std::str::from_utf8(w).ok()?.parse::<u32>().ok())
                .any(|y| (1900..=2015).contains(&y));
            let birthday = past_year && ctx.birthday.dist_before(m.start(), 400).is_some();
            if !ctx.dob.near(m.start(), m.end(), 50, 30) && !birthday {
                continue;
            }
            // A public figure's birth date is public knowledge unless the writer speaks of themself.
            let (ss, se) = sentence_of(&ctx.sents, m.start());
            if ctx.public.within(ss, se) && !ctx.first_person_at(m.start()) {
                out.residual(0.25);
                continue;
            }
            if asked_birth_date(text, ctx, m.end()) {
                out.residual(0.3);
                continue;
            }
            out.add(m.start(), m.end(), Category::DateOfBirth, 0.9);
        }
    }
}

/// Form labels of a birth date ("DOB", "Geburtsdatum", "出生日期"...): a date under a label is
/// a record's, never a question of general knowledge.
#[rustfmt::skip]
const DOB_LABELS: &[&str] = &[
    "date of birth", "birth date", "birthdate", "dob", "d.o.b", "fecha de nacimiento", "f. nac", "geburtsdatum",
    "geb.", "date de naissance", "出生日期", "出生年月", "janam tithi", "janm tithi", "जन्मतिथि", "जन्म तिथि",
];

/// A birth date asked about as general knowledge, whoever it belongs to ("When is Taylor Swift's
/// birthday? Dec 13 1989 right?", "¿Mbappé nació el 20/12/1998?", "Le 20 décembre 1998 ?"): a
/// question mark closes the date's clause, no sentence of the text speaks in the first person, no relation
/// word, name label or form label ("DOB", "Geburtsdatum") is in the text. People do not quiz an
/// assistant about a private person's birthday; they state it ("my son was born on...").
fn asked_birth_date(text: &str, ctx: &Ctx, end: usize) -> bool {
    // The question is about the date: its question mark follows within a few words ("... 1989
    // right?", "... 1930 geboren?"), not at the end of a longer request about something else.
    let after = &text[end..floor_char(text, (end + 24).min(text.len()))];
    let question = after.find(['?', '？']).is_some_and(|q| !after[..q].contains(['.', '!', '\n', '。']));
    if !question || ctx.any_first_person() || !ctx.relation.0.is_empty() || !ctx.name_label.0.is_empty() {
        return false;
    }
    !ctx.dob.0.iter().any(|&(a, b)| {
        let w = text[a..b].to_lowercase();
        DOB_LABELS.iter().any(|l| w.starts_with(l))
    })
}

/// Matches of `re` in the parts of `text` near a digit ([`Ctx::digit_regions`]), for patterns
/// whose every match contains a digit: text without digits costs nothing. Each search stops at
/// the end of its region and sees the text before the region (for word boundaries).
fn near_digits<'t>(re: &Regex, text: &'t str, ctx: &Ctx) -> Vec<regex::Match<'t>> {
    let mut out = Vec::new();
    for &(rs, re_end) in &ctx.digit_regions {
        let hay = &text[..re_end];
        let mut at = rs;
        while let Some(m) = re.find_at(hay, at) {
            out.push(m);
            at = if m.end() > m.start() { m.end() } else { m.end() + 1 };
            if at > hay.len() {
                break;
            }
        }
    }
    out
}

/// Like [`near_digits`], with capture groups.
fn captures_near_digits<'t>(re: &Regex, text: &'t str, ctx: &Ctx) -> Vec<regex::Captures<'t>> {
    let mut out = Vec::new();
    for &(rs, re_end) in &ctx.digit_regions {
        let hay = &text[..re_end];
        let mut at = rs;
        while let Some(c) = re.captures_at(hay, at) {
            let Some(m) = c.get(0) else { break };
            at = if m.end() > m.start() { m.end() } else { m.end() + 1 };
            out.push(c);
            if at > hay.len() {
                break;
            }
        }
    }
    out
}

/// Largest char boundary `<= i`.
pub(crate) fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn looks_like_date(tok: &str) -> bool {
    let parts: Vec<&str> = tok.split(['-', '/', '.']).collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// End of a PEM block starting before `from` (its END line within 64 KiB), or `from` when absent.
/// (Bounded, so that many BEGIN lines without an END stay linear.)
fn pem_end(text: &str, from: usize) -> usize {
    let window = &text[from..floor_char(text, from.saturating_add(65_536).min(text.len()))];
    match window.find("-----END") {
        Some(i) => {
            let after = i + "-----END".len();
            // The closing dashes of the END line ("-----END RSA PRIVATE KEY-----").
            let line = &window[after..floor_char(window, (after + 64).min(window.len()))];
            from + line.find("-----").map_or(after, |j| after + j + 5)
        }
        None => from,
    }
}

/// Placeholder or templated secret values that are not real secrets.
pub(crate) fn is_placeholder(v: &str) -> bool {
    let l = v.trim_matches(|c| matches!(c, '"' | '\'' | '`')).to_lowercase();
    const WORDS: &[&str] = &[
        "password",
        "passwort",
        "pass",
        "pwd",
        "secret",
        "changeme",
        "change_me",
        "your_password",
        "yourpassword",
        "your-password",
        "mypassword",
        "my_password",
        // The two famous example passwords (xkcd 936, bash.org), published everywhere.
        "correcthorsebatterystaple",
        "hunter2",
        "example",
        "placeholder",
        "redacted",
        "xxx",
        "xxxx",
        "*****",
        "<password>",
        "none",
        "null",
        "undefined",
        "todo",
        "tbd",
        "contraseña",
        "motdepasse",
        "密码",
    ];
    // xkcd 936's phrase with separators or cut short ("correct-horse", "Correct_Horse_Battery").
    let squashed: String = l.chars().filter(char::is_ascii_alphanumeric).collect();
    l.is_empty()
        || WORDS.contains(&l.as_str())
        || squashed.len() >= 12 && "correcthorsebatterystaple".starts_with(squashed.as_str())
        || l.starts_with('<')
        || l.starts_with("${")
        || l.starts_with("{{")
        || l.starts_with('{')
        || l.starts_with('$')
        || l.starts_with('%')
        || l.contains("your")
        || l.contains("xxxx")
        || l.chars().all(|c| c == '*' || c == 'x' || c == '.' || c == '•')
}

/// A secret that says it is none: the value (after a `KEY=` or `key:` if any) is a placeholder
/// ("SECRET_KEY=changeme", "API_KEY=<your key>") or a token spelled to look fake
/// ("xoxb-not-a-real-token-this-will-not-work", "sk_live_dummy…", "ghp_EXAMPLE…"). Real secrets
/// are random: they never contain these words.
fn placeholder_secret(found: &str) -> bool {
    let value = found.rsplit_once(['=', ':']).map_or(found, |(_, v)| v).trim();
    if value.is_empty() {
        return false;
    }
    // Words of the value, split at "-", "_", "." and spaces: "-xoxb-not-a-real-token-".
    let words: String =
        value.to_ascii_lowercase().chars().map(|c| if matches!(c, '_' | ' ' | '.') { '-' } else { c }).collect();
    let words = format!("-{words}-");
    #[rustfmt::skip]
    const FAKE: &[&str] = &[
        "-not-a-real-", "-notareal-", "-not-real-", "-fake-", "-dummy-", "-placeholder-", "-changeme-", "-change-me-",
        "-replace-me-", "-replaceme-", "-example-", "-sample-", "-redacted-", "-your-", "xxxxxx",
    ];
    is_placeholder(value) || FAKE.iter().any(|w| words.contains(w))
}

/// A long random-looking token: letters and digits mixed, enough distinct characters.
fn high_entropy_secret(v: &str) -> bool {
    if v.len() < 16 || is_placeholder(v) {
        return false;
    }
    let lower = v.to_lowercase();
    if ["process.env", "os.environ", "getenv", "config.", "settings.", "example", "sample", "dummy", "test_key"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return false;
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = v.bytes().any(|b| b.is_ascii_alphabetic());
    if !(has_digit && has_alpha) {
        return false;
    }
    // Shannon entropy in bits per character.
    let mut counts = [0u32; 256];
    for b in v.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    h >= 3.0
}

/// Words after "password" that describe it rather than give it.
const PASSWORD_STOPWORDS: &[&str] = &[
    "is",
    "was",
    "too",
    "not",
    "very",
    "weak",
    "strong",
    "incorrect",
    "wrong",
    "invalid",
    "expired",
    "required",
    "correct",
    "different",
    "missing",
    "empty",
    "blank",
    "being",
    "still",
    "case-sensitive",
    "visible",
    "hidden",
    "stored",
    "saved",
    "encrypted",
    "hashed",
    "changed",
    "reset",
    "locked",
    "compromised",
    "leaked",
    "manager",
    "policy",
    "requirements",
    "strength",
    "field",
    "hash",
    "for",
    "of",
    "and",
    "or",
    "to",
    "the",
    "a",
    "an",
    "if",
    "in",
    "on",
    "with",
    "that",
    "this",
    "it",
    "should",
    "must",
    "can",
    "does",
    "do",
    "doesn't",
    "isn't",
    "has",
    "have",
    "expires",
    "reuse",
    "recovery",
    "protected",
    "str",
    "string",
    "int",
    "bool",
    "none",
    "null",
    "muy",
    "es",
    "no",
    "si",
    "sea",
    "la",
    "el",
    "de",
    "que",
    "incorrecta",
    "correcta",
    "inválida",
    "débil",
    "segura",
    "obligatoria",
    "olvidada",
    "olvidé",
    "ist",
    "nicht",
    "zu",
    "falsch",
    "ungültig",
    "abgelaufen",
    "schwach",
    "sicher",
    "korrekt",
    "gesperrt",
    "vergessen",
    "zurück",
    "ändern",
    "aus",
    "est",
    "pas",
    "trop",
    "faible",
    "invalide",
    "expiré",
    "oublié",
    "robuste",
    "réinitialiser",
    "hai",
    "galat",
    "sahi",
    "kamzor",
    "bhool",
    "kaisa",
    "kaise",
    "kya",
    "reset",
    "bata",
    "change",
    "forgot",
    "forgotten",
    "update",
    "length",
];

/// Connectors between "password" and its value.
const PASSWORD_CONNECTORS: &[&str] = &[
    "is", "was", "its", "it's", "is:", ":", "=", "es", "era", "ist", "lautet", "war", "est", "c'est", "était", "是",
    "为", "：", "->", "=>", "→", "hai",
];

/// Adverbs that may stand between "is" and the value ("is still", "ist noch", "es todavía").
#[rustfmt::skip]
const PASSWORD_ADVERBS: &[&str] = &[
    "still", "now", "currently", "just", "also", "again", "temporarily", "noch", "immer", "jetzt", "aktuell",
    "aún", "aun", "todavía", "todavia", "ahora", "toujours", "encore", "maintenant", "actuellement", "abhi", "bhi",
];

/// Finds the value given after a password keyword ending at `from`; returns its byte span.
fn password_value(text: &str, from: usize, is_pin: bool) -> Option<(usize, usize)> {
    let end = floor_char(text, (from + 80).min(text.len()));
    let window = text.get(from..end)?;
    // Tokens: split on whitespace and CJK; record their spans.
    let mut toks: Vec<(usize, usize)> = Vec::new();
    let mut cur: Option<usize> = None;
    for (i, ch) in window.char_indices() {
        let sep = ch.is_whitespace() || super::normalize::is_cjk(ch) && !matches!(ch, '：');
        let connector_char = matches!(ch, '是' | '为' | '：');
        if sep || connector_char {
            if let Some(s) = cur.take() {
                toks.push((s, i));
            }
            if connector_char {
                toks.push((i, i + ch.len_utf8()));
            }
        } else if cur.is_none() {
            cur = Some(i);
        }
    }
    if let Some(s) = cur {
        toks.push((s, window.len()));
    }
    // Split a leading ":"/"=" off the first token ("password:hunter2", "PASSWORD=abc").
    let clean = |s: usize, e: usize| -> (usize, usize) {
        let t = &window[s..e];
        let lead = t.len() - t.trim_start_matches([':', '=', '"', '\'', '`', '(', '[', '«', '“', '‘', '„']).len();
        let t2 = &t[lead..];
        let trail = t2.len()
            - t2.trim_end_matches([
                ',', '.', ';', ')', ']', '"', '\'', '`', '，', '。', '、', '}', '»', '”', '’', '!', '?',
            ])
            .len();
        // A trailing "!" or "?" may belong to the password ("Sommer2024!"): keep one "!" when
        // the rest has letters and digits.
        let (mut vs, mut ve) = (s + lead, e - trail);
        let kept = &window[vs..ve];
        if ve < e && window[ve..].starts_with('!') && kept.bytes().any(|b| b.is_ascii_digit()) {
            ve += 1;
        }
        if vs > ve {
            vs = ve;
        }
        (vs, ve)
    };
    // "password policy/requirements/rules ...": passwords in general, no value follows.
    if toks.first().is_some_and(|&(s, e)| {
        matches!(window[s..e].to_lowercase().as_str(), "policy" | "policies" | "requirements" | "rules" | "guidelines")
    }) {
        return None;
    }
    let mut after_connector = false;
    let mut k = 0usize;
    while k < toks.len().min(14) {
        let (s, e) = toks[k];
        let raw = &window[s..e];
        let lower = raw.to_lowercase();
        let only_ops = raw.chars().all(|c| matches!(c, ':' | '=' | '：' | '"' | '\'' | '`' | '«' | '»' | '“' | '”'));
        // "printer:" / "WLAN-Passwort:" — a word ending in a colon introduces the value.
        let label = raw.len() > 1 && raw.ends_with([':', '：']) && !raw[..raw.len() - 1].contains(':');
        if PASSWORD_CONNECTORS.contains(&lower.as_str()) || only_ops || label {
            after_connector = true;
            k += 1;
            continue;
        }
        // "the password is still Winter2024!": an adverb between the connector and the value.
        if after_connector && PASSWORD_ADVERBS.contains(&lower.as_str()) {
            k += 1;
            continue;
        }
        let starts_with_op = raw.starts_with(':') || raw.starts_with('=');
        let quoted = raw.trim_start_matches([':', '=']).starts_with(['"', '\'', '`']);
        let (vs, ve) = clean(s, e);
        if vs >= ve {
            k += 1;
            continue;
        }
        let candidate = k == 0 || after_connector || starts_with_op;
        if candidate {
            let v = &window[vs..ve];
            // A key written in digit groups ("4827 1930 5562 8841"): the groups are one value.
            let mut gend = ve;
            let mut grouped = String::from(v);
            if v.bytes().all(|b| b.is_ascii_digit()) {
                let mut g = k + 1;
                while let Some(&(gs, ge)) = toks.get(g) {
                    let (cs, ce) = clean(gs, ge);
                    let t = &window[cs..ce];
                    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || t.len() > 6 {
                        break;
                    }
                    grouped.push_str(t);
                    gend = ce;
                    g += 1;
                }
            }
            if gend > ve && !is_pin && grouped.len() >= 8 {
                return Some((from + vs, from + gend));
            }
            if password_like(v, after_connector || starts_with_op, quoted, is_pin) {
                return Some((from + vs, from + ve));
            }
            // "login is admin / Sommer2024!": a user name, a slash, then the password.
            let pair_sep = toks.get(k + 1).is_some_and(|&(a, b)| matches!(&window[a..b], "/" | "|" | ":"));
            if pair_sep && k + 2 < toks.len() {
                k += 2;
                after_connector = true;
                continue;
            }
            if after_connector || starts_with_op {
                return None; // the word after "is"/":" is not a password: it describes one
            }
        }
        k += 1;
    }
    None
}

fn password_like(v: &str, after_connector: bool, quoted: bool, is_pin: bool) -> bool {
    let lower = v.to_lowercase();
    if v.chars().count() < 4 || v.len() > 64 || is_placeholder(v) || PASSWORD_STOPWORDS.contains(&lower.as_str()) {
        return false;
    }
    if is_pin {
        return (4..=8).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
    }
    // Code references: environment lookups, attribute access, calls, other variables.
    let code_ref = ["os.", "process.", "env", "getenv", "config", "settings", "self.", "args.", "request.", "input("]
        .iter()
        .any(|p| lower.starts_with(p))
        || v.contains('(')
        || v.contains('[')
        || v.starts_with('@')
        || v.starts_with('/')
        || v.starts_with("http");
    if code_ref {
        return false;
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = v.chars().any(char::is_alphabetic);
    let has_symbol = v.chars().any(|c| "!@#$%^&*?~+_.-".contains(c));
    let mixed = v.chars().skip(1).any(char::is_uppercase) && v.chars().any(char::is_lowercase);
    let identifier = v.chars().all(|c| c.is_ascii_alphabetic() || c == '_') && (v.contains('_') || mixed);
    if identifier && !quoted {
        return false; // `password=db_password`: a variable, not a value
    }
    if has_digit && has_alpha || has_symbol && has_alpha && !v.ends_with(['?', '.', '!']) && v.len() >= 6 {
        return true;
    }
    if has_digit && v.len() >= 6 {
        return true;
    }
    (after_connector || quoted) && (mixed || v.chars().count() >= 6) && has_alpha
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_patterns_compile() {
        assert!(Patterns::new().is_ok());
    }

    #[test]
    fn password_values() {
        let t = "my password is Sommer2024! thanks";
        let kw = t.find("password").map(|i| i + 8).unwrap_or(0);
        let (s, e) = password_value(t, kw, false).expect("value");
        assert_eq!(&t[s..e], "Sommer2024!");
        for neg in [
            "my password is too weak",
            "password reset kaise kare",
            "password = os.environ['X']",
            "password=db_password)",
            "Passwort vergessen - was tun?",
            "password manager?",
        ] {
            let kw = neg.to_lowercase().find("passw").map(|i| i + 8).unwrap_or(0);
            assert!(password_value(neg, kw, false).is_none(), "{neg}");
        }
    }
}
