//! The console's stylesheet and script, compiled into the binary and served from
//! `/console/assets/`: no third-party host, nothing fetched at run time. Their paths carry a
//! digest of their content, so a browser may keep them for a year and still never runs an old
//! script against a new page.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

fn versioned(name: &str, ext: &str, content: &str) -> String {
    let digest = hex::encode(&Sha256::digest(content.as_bytes())[..6]);
    format!("/console/assets/{name}.{digest}.{ext}")
}

static CSS_VERSIONED: LazyLock<String> = LazyLock::new(|| versioned("console", "css", CSS));
static JS_VERSIONED: LazyLock<String> = LazyLock::new(|| versioned("console", "js", JS));

/// Where pages link the stylesheet.
pub static CSS_PATH: LazyLock<&'static str> = LazyLock::new(|| CSS_VERSIONED.as_str());
/// Where pages load the script.
pub static JS_PATH: LazyLock<&'static str> = LazyLock::new(|| JS_VERSIONED.as_str());

/// `GET /console/assets/{file}`: the current stylesheet or script; anything else is 404.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    let file = format!("/console/assets/{}", path.as_str());
    let (content_type, body) = if file == *CSS_PATH {
        ("text/css; charset=utf-8", CSS)
    } else if file == *JS_PATH {
        ("text/javascript; charset=utf-8", JS)
    } else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset");
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(body)
}
