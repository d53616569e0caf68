//! Post bodies: Markdown (CommonMark with tables and strikethrough) rendered to safe HTML, and
//! the plain text of a body for the home page's excerpts.
//!
//! Raw HTML in a body is shown as text, never passed through, and links or images whose URL
//! uses a scheme other than http, https or mailto (`javascript:`, `data:`...) point nowhere.
//! Headings in a body sit below the post's own title (an `<h2>`): `#` becomes `<h3>`, `##`
//! `<h4>`, and so on down to `<h6>`.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

const OPTIONS: Options = Options::ENABLE_TABLES.union(Options::ENABLE_STRIKETHROUGH);

/// A body heading's level on the page: two below its Markdown level, `<h6>` at most.
fn demoted(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H3,
        HeadingLevel::H2 => HeadingLevel::H4,
        HeadingLevel::H3 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// The body `markdown` as HTML that is safe to put in a page as is.
pub fn render(markdown: &str) -> String {
    let events = Parser::new_ext(markdown, OPTIONS).map(|event| match event {
        Event::Start(Tag::Heading {
            level,
            id,
            classes,
            attrs,
        }) => Event::Start(Tag::Heading {
            level: demoted(level),
            id,
            classes,
            attrs,
        }),
        Event::End(TagEnd::Heading(level)) => Event::End(TagEnd::Heading(demoted(level))),
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

/// The text a reader sees of the rendered `markdown`, as one line: the words of paragraphs,
/// headings, list items, code and table cells, separated by spaces; no markup, no link targets
/// or image URLs (an image counts as its alt text). At most `max_chars` characters, cut at a
/// word where possible, with `…` when something was left out.
pub fn plain_text(markdown: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = 0usize;
    let mut pending_space = false;
    for event in Parser::new_ext(markdown, OPTIONS) {
        let piece = match &event {
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => t.as_ref(),
            Event::SoftBreak | Event::HardBreak | Event::Rule => {
                pending_space = true;
                continue;
            }
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock
                | TagEnd::Item
                | TagEnd::List(_)
                | TagEnd::TableCell
                | TagEnd::TableRow
                | TagEnd::TableHead
                | TagEnd::Table
                | TagEnd::FootnoteDefinition,
            )
            | Event::Start(Tag::Item | Tag::TableCell) => {
                pending_space = true;
                continue;
            }
            _ => continue,
        };
        for c in piece.chars() {
            let space = c.is_whitespace();
            if space {
                pending_space = true;
                continue;
            }
            if pending_space && !out.is_empty() {
                if chars + 1 >= max_chars {
                    return cut(out, true);
                }
                out.push(' ');
                chars += 1;
            }
            pending_space = false;
            if chars >= max_chars {
                return cut(out, false);
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// `text` with `…`; cut inside a word (not `at_word_end`), the partial word goes when a word
/// boundary lies in its second half.
fn cut(mut text: String, at_word_end: bool) -> String {
    let half = text.len() / 2;
    if !at_word_end && let Some(space) = text.rfind(' ').filter(|&at| at >= half) {
        text.truncate(space);
    }
    let trimmed = text.trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation());
    let mut out = trimmed.to_string();
    out.push('…');
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
    fn renders_markdown_with_headings_below_the_title() {
        assert_eq!(
            render("# Hi\n\n*there*\n\n## Sub\n\n#### Deep"),
            "<h3>Hi</h3>\n<p><em>there</em></p>\n<h4>Sub</h4>\n<h6>Deep</h6>\n"
        );
    }

    #[test]
    fn plain_text_is_what_a_reader_sees() {
        let body = "# It works\n\nThis site runs on **one box**: see [the docs](https://x.org/d).\n\n\
                    ```\ncargo run\n```\n\n- one\n- two\n\n![a cat](/cat.png) <b>raw</b>";
        assert_eq!(
            plain_text(body, 500),
            "It works This site runs on one box: see the docs. cargo run one two a cat <b>raw</b>"
        );
        let cut = plain_text(body, 30);
        assert!(cut.chars().count() <= 31, "{cut}");
        assert_eq!(cut, "It works This site runs on one…");
        assert_eq!(plain_text(&"é".repeat(400), 280).chars().count(), 281);
        assert_eq!(plain_text("", 10), "");
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
