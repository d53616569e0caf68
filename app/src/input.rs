//! Reading and checking request input: JSON objects field by field, so that every error names
//! the field it is about.

use axum::http::StatusCode;
use serde_json::{Map, Value};

/// Input that cannot be accepted: the status (400 or 413) and a message naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// 400 Bad Request or 413 Payload Too Large.
    pub status: StatusCode,
    /// What is wrong, naming the field.
    pub message: String,
}

fn bad(message: String) -> InputError {
    InputError {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

/// The longest post or settings title, in characters.
pub const MAX_TITLE: usize = 200;
/// The longest site description, in characters.
pub const MAX_DESCRIPTION: usize = 1000;
/// The longest user name, in characters.
pub const MAX_USERNAME: usize = 64;

/// A JSON request body as an object whose keys are all in `allowed`.
pub fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, InputError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(bad("the request body must be a JSON object".into()));
    };
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field `{key}`; expected {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(map)
}

/// The string field `name`, required.
pub fn string(map: &Map<String, Value>, name: &str) -> Result<String, InputError> {
    match map.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad(format!(
            "field `{name}` must be a string, not {}",
            kind(other)
        ))),
        None => Err(bad(format!("missing field `{name}`"))),
    }
}

/// The boolean field `name`, required.
pub fn boolean(map: &Map<String, Value>, name: &str) -> Result<bool, InputError> {
    match map.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!(
            "field `{name}` must be true or false, not {}",
            kind(other)
        ))),
        None => Err(bad(format!("missing field `{name}`"))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a one-line text field: not empty (unless `may_be_empty`), at most `max` characters,
/// no control characters. Returns it trimmed.
pub fn line(name: &str, value: &str, max: usize, may_be_empty: bool) -> Result<String, InputError> {
    let value = value.trim();
    if value.is_empty() && !may_be_empty {
        return Err(bad(format!("field `{name}` must not be empty")));
    }
    if value.chars().count() > max {
        return Err(InputError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("field `{name}` is longer than {max} characters"),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!(
            "field `{name}` must not contain control characters or line breaks"
        )));
    }
    Ok(value.to_string())
}

/// Checks a post body: any text of at most `max` bytes, without NUL characters.
pub fn text(name: &str, value: &str, max: usize) -> Result<String, InputError> {
    if value.len() > max {
        return Err(InputError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("field `{name}` is longer than {max} bytes"),
        });
    }
    if value.contains('\0') {
        return Err(bad(format!(
            "field `{name}` must not contain NUL characters"
        )));
    }
    Ok(value.to_string())
}

/// A post's fields, checked.
#[derive(Debug)]
pub struct PostInput {
    /// The title.
    pub title: String,
    /// The Markdown body.
    pub body: String,
    /// Whether it is published.
    pub published: bool,
}

impl PostInput {
    /// Reads `{"title","body","published"}`, all required.
    pub fn from_json(body: &[u8], max_body: usize) -> Result<PostInput, InputError> {
        let map = object(body, &["title", "body", "published"])?;
        Ok(PostInput {
            title: line("title", &string(&map, "title")?, MAX_TITLE, false)?,
            body: text("body", &string(&map, "body")?, max_body)?,
            published: boolean(&map, "published")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = PostInput::from_json(br#"{"title": 5, "body": "", "published": true}"#, 100)
            .expect_err("type");
        assert!(e.message.contains("`title`"), "{}", e.message);
        let e = PostInput::from_json(br#"{"title": "t", "body": ""}"#, 100).expect_err("missing");
        assert!(e.message.contains("`published`"), "{}", e.message);
        let e = PostInput::from_json(br#"{"title": "t", "body": "", "published": 1}"#, 100)
            .expect_err("type");
        assert!(e.message.contains("`published`"), "{}", e.message);
        let e = PostInput::from_json(
            br#"{"title": "t", "body": "", "published": true, "x": 1}"#,
            100,
        )
        .expect_err("unknown");
        assert!(e.message.contains("`x`"), "{}", e.message);
        let e = PostInput::from_json(
            br#"{"title": "t", "body": "0123456789", "published": true}"#,
            5,
        )
        .expect_err("long");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("`body`"), "{}", e.message);
        let e = PostInput::from_json(b"{", 5).expect_err("json");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let ok = PostInput::from_json(br#"{"title": " t ", "body": "b", "published": false}"#, 5)
            .expect("ok");
        assert_eq!(ok.title, "t");
    }
}
