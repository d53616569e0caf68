//! The public pages and /healthz against the real binary and a real MariaDB.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn home_lists_published_posts_newest_first_with_pages() {
    let (_db, app) = app_with_admin("posts_per_page = 3").await;
    let c = admin_client(&app).await;
    for i in 1..=7 {
        create_post(
            &c,
            &app,
            &format!("Post number {i}"),
            &format!("Body of post {i}"),
            true,
        )
        .await;
    }
    create_post(&c, &app, "Secret draft", "not yet", false).await;
    let anon = client();
    let r = send(anon.get(app.url("/"))).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page1 = r.text().await.unwrap();
    let at = |needle: &str| page1.find(needle);
    assert!(at("Post number 7").unwrap() < at("Post number 6").unwrap());
    assert!(at("Post number 6").unwrap() < at("Post number 5").unwrap());
    assert!(at("Post number 4").is_none());
    assert!(at("Secret draft").is_none());
    assert!(page1.contains("href=\"/?page=2\""));
    assert!(!page1.contains("href=\"/?page=0\""));
    let page3 = text(anon.get(app.url("/?page=3"))).await;
    assert!(page3.contains("Post number 1") && !page3.contains("Post number 2"));
    assert!(page3.contains("href=\"/?page=2\"") && !page3.contains("href=\"/?page=4\""));
    assert_eq!(status(anon.get(app.url("/?page=4"))).await, 404);
    let r = send(anon.get(app.url("/?page=x"))).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("page"));
}

#[tokio::test]
async fn home_shows_settings_and_an_empty_site() {
    let (_db, app) = app_with_admin("").await;
    let page = text(client().get(app.url("/"))).await;
    assert!(page.contains("My onebox site"), "{page}");
    assert!(page.contains("No posts yet."), "{page}");
}

#[tokio::test]
async fn a_post_page_renders_markdown_safely() {
    let (_db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let body = "# Top\n\n## Heading\n\nSome **bold** text.\n\n<script>alert('body')</script>\n\n[click](javascript:alert(1))";
    let post = create_post(&c, &app, "<script>alert('title')</script>", body, true).await;
    let id = post["id"].as_u64().unwrap();
    let draft = create_post(&c, &app, "draft", "d", false).await;
    let anon = client();
    let page = text(anon.get(app.url(&format!("/posts/{id}")))).await;
    // The post's title is the page's <h2>; the body's headings sit below it.
    assert!(page.contains("<h3>Top</h3>"), "{page}");
    assert!(page.contains("<h4>Heading</h4>"), "{page}");
    assert!(
        !page.contains("<h1>Top") && !page.contains("<h2>Heading"),
        "{page}"
    );
    // Dates as people read them, the ISO form in the markup.
    let created = post["created_at"].as_str().unwrap();
    let time = format!("<time datetime=\"{created}\">");
    let at = page
        .find(&time)
        .unwrap_or_else(|| panic!("{time} in {page}"))
        + time.len();
    let shown = &page[at..at + page[at..].find("</time>").unwrap()];
    assert!(
        !shown.contains('T') && shown.contains(&created[..4]) && shown.split(' ').count() == 3,
        "{shown}"
    );
    assert!(page.contains("<strong>bold</strong>"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("javascript:"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(") || page.contains("&#60;script&#62;alert("),
        "{page}"
    );
    let home = text(anon.get(app.url("/"))).await;
    assert!(!home.contains("<script>"), "{home}");
    // The excerpt is the text a reader sees, not the Markdown source.
    assert!(home.contains("<p>Top Heading Some bold text. "), "{home}");
    assert!(!home.contains("##") && !home.contains("**"), "{home}");
    assert!(home.contains(&format!("{time}{shown}</time>")), "{home}");
    for path in [
        format!("/posts/{}", draft["id"]),
        "/posts/424242".into(),
        "/posts/abc".into(),
        "/nowhere".into(),
    ] {
        let r = send(anon.get(app.url(&path))).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("<html"), "{path}");
    }
}

#[tokio::test]
async fn long_bodies_are_cut_on_the_home_page() {
    let (_db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let body = format!("{}END-OF-BODY", "word ".repeat(100));
    let post = create_post(&c, &app, "Long", &body, true).await;
    let home = text(client().get(app.url("/"))).await;
    assert!(
        !home.contains("END-OF-BODY") && home.contains('…'),
        "{home}"
    );
    let page = text(client().get(app.url(&format!("/posts/{}", post["id"])))).await;
    assert!(page.contains("END-OF-BODY"));
}

#[tokio::test]
async fn healthz_answers_200_when_the_database_does() {
    let (_db, app) = app_with_admin("").await;
    let r = send(client().get(app.url("/healthz"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
}
