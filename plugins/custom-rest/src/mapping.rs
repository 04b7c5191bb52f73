//! Request and response mappings: which JSON pointer each part of a chat
//! exchange lives at. The host validates both settings when the connection
//! is saved (manifest type `json-pointers`); the plugin checks again, as it
//! must not trust its input.

use std::collections::BTreeMap;

use airlock_sdk::types::PluginError;
use serde_json::{Map, Value};

/// Keys of `request-mapping`.
pub const REQUEST_KEYS: &[&str] = &["prompt", "system", "model", "session", "user"];
/// Keys of `response-mapping`.
pub const RESPONSE_KEYS: &[&str] = &["answer", "session", "status", "error"];

/// The gateway preset: `{"prompt", "system", "model", "sessionId", "userId"}`
/// in, `{"status", "sessionId", "msg"}` out.
pub const PRESET_REQUEST: &str = r#"{"prompt": "/prompt", "system": "/system", "model": "/model", "session": "/sessionId", "user": "/userId"}"#;
pub const PRESET_RESPONSE: &str =
    r#"{"answer": "/msg", "session": "/sessionId", "status": "/status"}"#;

/// A parsed JSON pointer (RFC 6901), never the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Err("the empty pointer (the whole document) cannot be mapped".into());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must start with `/`"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(format!(
                                "{text:?}: `~` must be followed by 0 or 1 in a JSON pointer"
                            ));
                        }
                    }
                } else {
                    token.push(c);
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this pointer in `doc`.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        doc.pointer(&self.text)
    }

    /// Set the value at this pointer, creating objects on the way.
    pub fn set(&self, doc: &mut Value, value: Value) -> Result<(), PluginError> {
        let mut at = doc;
        let (last, parents) = self.tokens.split_last().expect("pointers are never empty");
        for token in parents {
            let Value::Object(map) = at else {
                return Err(conflict(self));
            };
            at = map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        let Value::Object(map) = at else {
            return Err(conflict(self));
        };
        map.insert(last.clone(), value);
        Ok(())
    }

    fn is_prefix_of(&self, other: &Pointer) -> bool {
        other.tokens.len() > self.tokens.len() && other.tokens.starts_with(&self.tokens)
    }
}

fn conflict(pointer: &Pointer) -> PluginError {
    PluginError::InvalidInput(format!(
        "request mapping: {} lies inside another mapped value",
        pointer.as_str()
    ))
}

/// A validated mapping: key to pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping(BTreeMap<String, Pointer>);

impl Mapping {
    /// Parse `text` (a JSON object of key to pointer), allowing `keys`,
    /// requiring `required`. With `distinct`, no pointer may equal or
    /// contain another (they are written into one request body).
    pub fn parse(
        setting: &str,
        text: &str,
        keys: &[&str],
        required: &[&str],
        distinct: bool,
    ) -> Result<Mapping, PluginError> {
        let invalid =
            |why: String| PluginError::InvalidInput(format!("setting `{setting}`: {why}"));
        let value: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(invalid(
                "must be a JSON object of names to JSON pointers".into(),
            ));
        };
        let mut map = BTreeMap::new();
        for (key, pointer) in object {
            if !keys.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "unknown entry `{key}`; entries are {}",
                    keys.join(", ")
                )));
            }
            let Value::String(pointer) = pointer else {
                return Err(invalid(format!(
                    "entry `{key}` must be a JSON pointer string"
                )));
            };
            let pointer =
                Pointer::parse(&pointer).map_err(|why| invalid(format!("entry `{key}`: {why}")))?;
            map.insert(key, pointer);
        }
        for key in required {
            if !map.contains_key(*key) {
                return Err(invalid(format!("entry `{key}` is required")));
            }
        }
        if distinct {
            for (a, pa) in &map {
                for (b, pb) in &map {
                    if a != b && (pa == pb || pa.is_prefix_of(pb)) {
                        return Err(invalid(format!(
                            "entries `{a}` ({}) and `{b}` ({}) overlap",
                            pa.as_str(),
                            pb.as_str()
                        )));
                    }
                }
            }
        }
        Ok(Mapping(map))
    }

    pub fn get(&self, key: &str) -> Option<&Pointer> {
        self.0.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn presets_parse() {
        let req = Mapping::parse("r", PRESET_REQUEST, REQUEST_KEYS, &["prompt"], true).unwrap();
        assert_eq!(req.get("session").unwrap().as_str(), "/sessionId");
        let resp = Mapping::parse("r", PRESET_RESPONSE, RESPONSE_KEYS, &["answer"], false).unwrap();
        assert_eq!(resp.get("answer").unwrap().as_str(), "/msg");
    }

    #[test]
    fn pointers_set_and_get() {
        let mut doc = json!({});
        Pointer::parse("/input/text")
            .unwrap()
            .set(&mut doc, json!("hi"))
            .unwrap();
        Pointer::parse("/input/a~1b~0c")
            .unwrap()
            .set(&mut doc, json!(1))
            .unwrap();
        Pointer::parse("/model")
            .unwrap()
            .set(&mut doc, json!("m"))
            .unwrap();
        assert_eq!(
            doc,
            json!({"input": {"text": "hi", "a/b~c": 1}, "model": "m"})
        );
        let answer = json!({"data": {"choices": [{"text": "ok"}]}});
        assert_eq!(
            Pointer::parse("/data/choices/0/text").unwrap().get(&answer),
            Some(&json!("ok"))
        );
        let mut scalar = json!({"a": 1});
        assert!(
            Pointer::parse("/a/b")
                .unwrap()
                .set(&mut scalar, json!(2))
                .is_err()
        );
    }

    #[test]
    fn refuses_invalid_mappings() {
        let parse =
            |text: &str| Mapping::parse("request-mapping", text, REQUEST_KEYS, &["prompt"], true);
        for (text, needle) in [
            ("[1]", "JSON object"),
            ("{not json", "not JSON"),
            (r#"{"system": "/s"}"#, "`prompt` is required"),
            (r#"{"prompt": "p"}"#, "must start with `/`"),
            (r#"{"prompt": ""}"#, "empty pointer"),
            (r#"{"prompt": "/a~2"}"#, "`~`"),
            (r#"{"prompt": 3}"#, "pointer string"),
            (
                r#"{"prompt": "/p", "colour": "/c"}"#,
                "unknown entry `colour`",
            ),
            (r#"{"prompt": "/p", "system": "/p"}"#, "overlap"),
            (r#"{"prompt": "/a", "system": "/a/b"}"#, "overlap"),
        ] {
            match parse(text) {
                Err(PluginError::InvalidInput(m)) => assert!(m.contains(needle), "{text}: {m}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
