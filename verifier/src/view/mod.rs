//! The reviewer's page: one self-contained HTML file (inline CSS and JS, no network) built
//! from a verification report, written to disk or served on loopback.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const PAGE: &str = include_str!("page.html");
const SLOT: &str = "__CLAW_REPORT__";

/// The page with `report` (a verification report as JSON) embedded.
///
/// The JSON sits in a `<script type="application/json">` block; `<`, `>` and `&` are escaped
/// as `\u003c`/`\u003e`/`\u0026` so no string in a bundle can close the block or start markup.
pub fn render(report: &serde_json::Value) -> String {
    let json = serde_json::to_string(report)
        .expect("a JSON value serialises")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    PAGE.replacen(SLOT, &json, 1)
}

/// Serves the rendered page at `/` (and the report at `/report.json`) until the task ends.
pub async fn serve(
    report: serde_json::Value,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let page = render(&report);
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        page,
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/report.json",
            get(move || {
                let report = report.clone();
                async move { axum::Json(report) }
            }),
        );
    axum::serve(listener, app).await
}

/// The address the viewer listens on when none is given.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8088))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_strings_cannot_break_out_of_the_script_block() {
        let report = serde_json::json!({ "job": "</script><script>alert(1)</script>&amp;" });
        let page = render(&report);
        assert!(!page.contains("</script><script>alert(1)"));
        assert!(page.contains("\\u003c/script\\u003e"));
        assert!(!page.contains(SLOT));
        assert_eq!(
            page.matches("</script>").count(),
            PAGE.matches("</script>").count()
        );
    }

    #[test]
    fn the_page_needs_no_network() {
        let page = render(&serde_json::json!({}));
        for needle in ["http://", "https://", "src=\"//", "@import"] {
            assert!(!page.contains(needle), "page references {needle}");
        }
    }
}
