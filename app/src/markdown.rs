//! Post bodies: Markdown (CommonMark with tables and strikethrough) rendered to safe HTML.
//!
//! Raw HTML in a body is shown as text, never passed through, and links or images whose URL
//! uses a scheme other than http, https or mailto (`javascript:`, `data:`...) point nowhere.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

/// The body `markdown` as HTML that is safe to put in a page as is.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// `url` when it is relative or uses http, https or mailto; `#` otherwise.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let lower = lower.to_ascii_lowercase();
    let scheme_end = lower.find([':', '/', '?', '#']);
    match scheme_end {
        Some(i) if lower.as_bytes()[i] == b':' => {
            let scheme = &lower[..i];
            if matches!(scheme, "http" | "https" | "mailto") {
                url
            } else {
                CowStr::from("#")
            }
        }
        _ => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown() {
        assert_eq!(
            render("# Hi\n\n*there*"),
            "<h1>Hi</h1>\n<p><em>there</em></p>\n"
        );
    }

    #[test]
    fn raw_html_is_escaped() {
        let out = render("<script>alert(1)</script>\n\nx <img src=x onerror=alert(1)> y");
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }

    #[test]
    fn dangerous_links_point_nowhere() {
        for link in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "java\tscript:x",
            "data:text/html,x",
            "vbscript:x",
        ] {
            let out = render(&format!("[a](<{link}>) ![b](<{link}>)"));
            assert!(
                !out.to_ascii_lowercase().contains("script:"),
                "{link}: {out}"
            );
            assert!(!out.contains("data:"), "{link}: {out}");
        }
        let out = render("[a](https://example.org/x?y=1) [b](/posts/2) [c](mailto:a@b.c)");
        assert!(out.contains("href=\"https://example.org/x?y=1\""), "{out}");
        assert!(out.contains("href=\"/posts/2\""), "{out}");
        assert!(out.contains("href=\"mailto:a@b.c\""), "{out}");
    }
}
