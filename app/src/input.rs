//! Checking request input: the API's JSON bodies as typed structs (read by
//! [`crate::extract::ApiJson`]) and the checks of their fields, every error naming its field.

use axum::http::StatusCode;
use serde::Deserialize;

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

/// The longest password accepted at login, in characters (as `admin set-password` allows).
pub const MAX_PASSWORD: usize = 1024;

/// Checks a user name as typed at login: trimmed, 1 to [`MAX_USERNAME`] characters.
pub fn username(name: &str, value: &str) -> Result<String, InputError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_USERNAME {
        return Err(bad(format!(
            "field `{name}` must be 1 to {MAX_USERNAME} characters"
        )));
    }
    Ok(value.to_string())
}

/// Checks a password as typed at login: at most [`MAX_PASSWORD`] characters.
pub fn password(name: &str, value: &str) -> Result<String, InputError> {
    if value.chars().count() > MAX_PASSWORD {
        return Err(bad(format!(
            "field `{name}` must be at most {MAX_PASSWORD} characters"
        )));
    }
    Ok(value.to_string())
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

/// A post's fields as the API takes them: `{"title","body","published"}`, all required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostInput {
    /// The title.
    pub title: String,
    /// The Markdown body.
    pub body: String,
    /// Whether it is published.
    pub published: bool,
}

impl PostInput {
    /// The same fields checked: a one-line title, a body of at most `max_body` bytes.
    pub fn checked(self, max_body: usize) -> Result<PostInput, InputError> {
        Ok(PostInput {
            title: line("title", &self.title, MAX_TITLE, false)?,
            body: text("body", &self.body, max_body)?,
            published: self.published,
        })
    }
}

/// The site settings as the API takes them: `{"title","description"}`, both required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// The site's title.
    pub title: String,
    /// A line describing the site.
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(json: &[u8], max: usize) -> Result<PostInput, String> {
        crate::extract::from_json::<PostInput>(json).and_then(|p| {
            p.checked(max)
                .map_err(|e| format!("{} {}", e.status, e.message))
        })
    }

    #[test]
    fn errors_name_the_field() {
        let e = post(br#"{"title": 5, "body": "", "published": true}"#, 100).expect_err("type");
        assert!(e.contains("`title`"), "{e}");
        let e = post(br#"{"title": "t", "body": ""}"#, 100).expect_err("missing");
        assert!(e.contains("`published`"), "{e}");
        let e = post(br#"{"title": "t", "body": "", "published": 1}"#, 100).expect_err("type");
        assert!(e.contains("`published`"), "{e}");
        let e = post(
            br#"{"title": "t", "body": "", "published": true, "x": 1}"#,
            100,
        )
        .expect_err("unknown");
        assert!(e.contains("`x`"), "{e}");
        let e = post(
            br#"{"title": "t", "body": "0123456789", "published": true}"#,
            5,
        )
        .expect_err("long");
        assert!(e.starts_with("413") && e.contains("`body`"), "{e}");
        let e = post(b"{", 5).expect_err("json");
        assert!(e.contains("not valid JSON"), "{e}");
        let ok = post(br#"{"title": " t ", "body": "b", "published": false}"#, 5).expect("ok");
        assert_eq!(ok.title, "t");
    }

    #[test]
    fn login_fields_are_bounded() {
        assert_eq!(username("username", " admin ").expect("ok"), "admin");
        assert!(username("username", "").is_err());
        let long = "u".repeat(MAX_USERNAME + 1);
        let e = username("username", &long).expect_err("long");
        assert!(e.message.contains("`username`"), "{}", e.message);
        assert!(password("password", &"p".repeat(MAX_PASSWORD)).is_ok());
        assert!(password("password", &"p".repeat(MAX_PASSWORD + 1)).is_err());
    }
}
