//! Template filters: dates as people read them. The templates keep the stored RFC 3339 form in
//! `<time datetime>` and show `{{ created_at|date }}`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// `29 November 2026` for the RFC 3339 time `value`; the value itself when it is not one.
pub fn date<T: std::fmt::Display>(value: T, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(human(&value.to_string(), false))
}

/// `29 November 2026, 18:08 UTC` for the RFC 3339 time `value`; the value itself when it is not
/// one.
pub fn date_time<T: std::fmt::Display>(value: T, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(human(&value.to_string(), true))
}

fn human(text: &str, with_time: bool) -> String {
    let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) else {
        return text.to_string();
    };
    let at = at.to_offset(time::UtcOffset::UTC);
    let formatted = if with_time {
        at.format(format_description!(
            "[day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
        ))
    } else {
        at.format(format_description!(
            "[day padding:none] [month repr:long] [year]"
        ))
    };
    formatted.unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(human("2026-11-29T18:08:45Z", false), "29 November 2026");
        assert_eq!(
            human("2026-03-01T07:05:00Z", true),
            "1 March 2026, 07:05 UTC"
        );
        assert_eq!(human("not a date", false), "not a date");
    }
}
