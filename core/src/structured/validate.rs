//! Checks a JSON value against a JSON Schema, for values that did not come out of our own
//! constrained decoding (a cloud model's tool-call arguments).
//!
//! The keywords are those the constraint compiler supports ([`super::OutputConstraint::JsonSchema`]):
//! `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`,
//! `prefixItems`, `minItems`/`maxItems`, `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`,
//! `multipleOf`, `minLength`/`maxLength`, `pattern`, `anyOf`/`oneOf`/`allOf`, `minProperties`/
//! `maxProperties` and local `$ref`s (`#/$defs/…`, `#/definitions/…`); annotations (`title`,
//! `description`, `default`, `examples`, `format`, `$schema`, `$id`, `x-…`) are ignored. Any other
//! keyword makes the check fail: a value is never called valid against rules we did not check.
//!
//! Errors name the place (a JSON pointer) and the rule, never a value (the arguments may be
//! personal data).

use serde_json::Value;

/// Deepest nesting followed (schema and value together).
const MAX_DEPTH: usize = 64;

/// Why a value does not validate: where (a JSON pointer into the value) and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer to the failing place in the value (`""` for the root).
    pub at: String,
    /// The rule that failed (a keyword, and a few words).
    pub rule: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.at.is_empty() { "the value" } else { self.at.as_str() };
        write!(f, "{at}: {}", self.rule)
    }
}

/// Checks `value` against `schema` (whose local `$ref`s resolve against `schema` itself).
pub fn check(schema: &Value, value: &Value) -> Result<(), Invalid> {
    Checker { root: schema }.check(schema, value, &mut String::new(), 0)
}

struct Checker<'a> {
    root: &'a Value,
}

fn fail(at: &str, rule: impl Into<String>) -> Result<(), Invalid> {
    Err(Invalid { at: at.to_string(), rule: rule.into() })
}

const IGNORED: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "format",
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "deprecated",
    "readOnly",
    "writeOnly",
];

fn type_matches(ty: &str, v: &Value) -> Option<bool> {
    Some(match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => return None,
    })
}

impl Checker<'_> {
    fn resolve(&self, r: &str) -> Option<&Value> {
        let path = r.strip_prefix('#')?;
        if path.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(path)
    }

    fn check(&self, schema: &Value, v: &Value, at: &mut String, depth: usize) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return fail(at, "nested too deep to check");
        }
        let s = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return fail(at, "the schema allows nothing here"),
            Value::Object(s) => s,
            _ => return fail(at, "the schema is not an object"),
        };
        for (k, rule) in s {
            if IGNORED.contains(&k.as_str()) || k.starts_with("x-") {
                continue;
            }
            match k.as_str() {
                "$ref" => {
                    let Some(target) = rule.as_str().and_then(|r| self.resolve(r)) else {
                        return fail(at, "$ref: not a local reference");
                    };
                    self.check(target, v, at, depth + 1)?;
                }
                "type" => {
                    let ok = match rule {
                        Value::String(t) => type_matches(t, v),
                        Value::Array(ts) => ts
                            .iter()
                            .map(|t| t.as_str().and_then(|t| type_matches(t, v)))
                            .try_fold(false, |acc, m| m.map(|m| acc || m)),
                        _ => None,
                    };
                    match ok {
                        Some(true) => {}
                        Some(false) => return fail(at, "type: wrong type"),
                        None => return fail(at, "type: unknown type in the schema"),
                    }
                }
                "enum" => {
                    if !rule.as_array().is_some_and(|e| e.iter().any(|x| json_eq(x, v))) {
                        return fail(at, "enum: not one of the values");
                    }
                }
                "const" => {
                    if !json_eq(rule, v) {
                        return fail(at, "const: not the value");
                    }
                }
                "properties" | "required" | "additionalProperties" | "minProperties" | "maxProperties" => {
                    if let Value::Object(o) = v {
                        self.check_object(k, rule, s, o, at, depth)?;
                    }
                }
                "items" | "prefixItems" | "minItems" | "maxItems" => {
                    if let Value::Array(a) = v {
                        self.check_array(k, rule, s, a, at, depth)?;
                    }
                }
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
                    let Some(bound) = rule.as_f64() else {
                        return fail(at, format!("{k}: not a number in the schema"));
                    };
                    if let Some(x) = v.as_f64().filter(|_| v.is_number()) {
                        let ok = match k.as_str() {
                            "minimum" => x >= bound,
                            "maximum" => x <= bound,
                            "exclusiveMinimum" => x > bound,
                            "exclusiveMaximum" => x < bound,
                            _ => bound > 0.0 && ((x / bound) - (x / bound).round()).abs() < 1e-9,
                        };
                        if !ok {
                            return fail(at, format!("{k}: out of bounds"));
                        }
                    }
                }
                "minLength" | "maxLength" => {
                    let Some(n) = rule.as_u64() else { return fail(at, format!("{k}: not a count in the schema")) };
                    if let Value::String(x) = v {
                        let len = x.chars().count() as u64;
                        if (k == "minLength" && len < n) || (k == "maxLength" && len > n) {
                            return fail(at, format!("{k}: wrong length"));
                        }
                    }
                }
                "pattern" => {
                    let Some(re) = rule.as_str().and_then(|p| regex::Regex::new(p).ok()) else {
                        return fail(at, "pattern: not a usable regular expression");
                    };
                    if let Value::String(x) = v {
                        if !re.is_match(x) {
                            return fail(at, "pattern: does not match");
                        }
                    }
                }
                "anyOf" | "oneOf" | "allOf" => {
                    let Some(subs) = rule.as_array().filter(|a| !a.is_empty()) else {
                        return fail(at, format!("{k}: not a list of schemas"));
                    };
                    let passed =
                        subs.iter().filter(|sub| self.check(sub, v, &mut at.clone(), depth + 1).is_ok()).count();
                    let ok = match k.as_str() {
                        "anyOf" => passed >= 1,
                        "oneOf" => passed == 1,
                        _ => passed == subs.len(),
                    };
                    if !ok {
                        return fail(at, format!("{k}: no match"));
                    }
                }
                other => return fail(at, format!("{other}: a keyword this check does not support")),
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        k: &str,
        rule: &Value,
        s: &serde_json::Map<String, Value>,
        o: &serde_json::Map<String, Value>,
        at: &mut String,
        depth: usize,
    ) -> Result<(), Invalid> {
        match k {
            "properties" => {
                let Some(props) = rule.as_object() else { return fail(at, "properties: not an object") };
                for (name, sub) in props {
                    if let Some(x) = o.get(name) {
                        let len = at.len();
                        at.push('/');
                        at.push_str(&escape(name));
                        self.check(sub, x, at, depth + 1)?;
                        at.truncate(len);
                    }
                }
            }
            "required" => {
                let Some(req) = rule.as_array() else { return fail(at, "required: not a list") };
                for name in req {
                    match name.as_str() {
                        Some(n) if o.contains_key(n) => {}
                        Some(_) => return fail(at, "required: a required property is missing"),
                        None => return fail(at, "required: not a list of names"),
                    }
                }
            }
            "additionalProperties" => {
                let props = s.get("properties").and_then(Value::as_object);
                for (name, x) in o {
                    if props.is_some_and(|p| p.contains_key(name)) {
                        continue;
                    }
                    if rule == &Value::Bool(false) {
                        return fail(at, "additionalProperties: a property that is not allowed");
                    }
                    // The name came with the value (it may be data): the place says `*`.
                    let len = at.len();
                    at.push_str("/*");
                    self.check(rule, x, at, depth + 1)?;
                    at.truncate(len);
                }
            }
            _ => {
                let Some(n) = rule.as_u64() else { return fail(at, format!("{k}: not a count in the schema")) };
                let len = o.len() as u64;
                if (k == "minProperties" && len < n) || (k == "maxProperties" && len > n) {
                    return fail(at, format!("{k}: wrong number of properties"));
                }
            }
        }
        Ok(())
    }

    fn check_array(
        &self,
        k: &str,
        rule: &Value,
        s: &serde_json::Map<String, Value>,
        a: &[Value],
        at: &mut String,
        depth: usize,
    ) -> Result<(), Invalid> {
        let item = |i: usize, sub: &Value, at: &mut String| {
            let len = at.len();
            at.push_str(&format!("/{i}"));
            let r = self.check(sub, &a[i], at, depth + 1);
            at.truncate(len);
            r
        };
        match k {
            "prefixItems" => {
                let Some(subs) = rule.as_array() else { return fail(at, "prefixItems: not a list") };
                for (i, sub) in subs.iter().enumerate().take(a.len()) {
                    item(i, sub, at)?;
                }
            }
            "items" => {
                let skip = s.get("prefixItems").and_then(Value::as_array).map_or(0, Vec::len);
                for i in skip..a.len() {
                    item(i, rule, at)?;
                }
            }
            _ => {
                let Some(n) = rule.as_u64() else { return fail(at, format!("{k}: not a count in the schema")) };
                let len = a.len() as u64;
                if (k == "minItems" && len < n) || (k == "maxItems" && len > n) {
                    return fail(at, format!("{k}: wrong number of items"));
                }
            }
        }
        Ok(())
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A JSON pointer token (`~` and `/` escaped).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_supported_keywords_accept_and_reject() {
        let s = json!({
            "type": "object",
            "properties": {
                "item": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "qty": {"type": "integer", "minimum": 1, "maximum": 20},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                "mode": {"anyOf": [{"const": "fast"}, {"$ref": "#/$defs/slow"}]}
            },
            "required": ["item", "qty"],
            "additionalProperties": false,
            "$defs": {"slow": {"type": "string", "enum": ["slow"]}}
        });
        assert_eq!(check(&s, &json!({"item": "apple", "qty": 2, "tags": ["a"], "mode": "slow"})), Ok(()));
        assert_eq!(check(&s, &json!({"qty": 2.0, "item": "pear"})), Ok(()), "key order is free; 2.0 is an integer");
        for (bad, at) in [
            (json!({"item": "apple"}), ""),
            (json!({"item": "apple", "qty": 0}), "/qty"),
            (json!({"item": "apple", "qty": 1.5}), "/qty"),
            (json!({"item": "apples!", "qty": 1}), "/item"),
            (json!({"item": "APPLE", "qty": 1}), "/item"),
            (json!({"item": "apple", "qty": 1, "tags": ["c"]}), "/tags/0"),
            (json!({"item": "apple", "qty": 1, "tags": ["a", "a", "b"]}), "/tags"),
            (json!({"item": "apple", "qty": 1, "mode": "medium"}), "/mode"),
            (json!({"item": "apple", "qty": 1, "card": "4539"}), ""),
            (json!(["apple"]), ""),
        ] {
            let e = check(&s, &bad).expect_err("invalid");
            assert_eq!(e.at, at, "{bad}: {e}");
            assert!(!e.to_string().contains("apple") && !e.to_string().contains("card"), "no value or name in {e}");
        }
        // A keyword we do not check is never passed as valid.
        assert!(check(&json!({"type": "array", "uniqueItems": true}), &json!([1])).is_err());
        assert!(check(&json!({"$ref": "https://example.com/s.json"}), &json!(1)).is_err());
        assert_eq!(check(&json!({"type": ["string", "null"], "description": "x", "x-foo": 1}), &json!(null)), Ok(()));
        assert!(check(&json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}), &json!(1)).is_err());
    }
}
