//! Cross-origin resource sharing (the Fetch standard's CORS protocol), off unless origins are
//! allowed: a browser page from another origin may call the API only when its origin is listed.
//!
//! A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is
//! answered 204 with the methods and the headers it asked for (the `openai` JavaScript client
//! sends its own `x-stainless-*` headers, so a fixed list would refuse it); from any other
//! origin, or with CORS off, it gets a 403 in OpenAI's error shape and no CORS headers, which
//! the browser takes as a refusal. Other requests from an allowed origin get
//! `Access-Control-Allow-Origin` on their answer; from another origin they are answered as
//! usual but without it, so the browser keeps the answer from the page.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// The origins allowed to call from a browser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    /// Lowercased `scheme://host[:port]`.
    origins: Vec<String>,
    /// `*`: every origin.
    any: bool,
}

impl Cors {
    /// From `--cors-origin` values, each one origin or several separated by commas; `*` allows
    /// every origin. An origin is `http(s)://host[:port]` with no path, as browsers send it.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Cors, String> {
        let mut cors = Cors::default();
        for part in values.iter().flat_map(|v| v.as_ref().split(',')) {
            let o = part.trim().trim_end_matches('/');
            if o.is_empty() {
                continue;
            }
            if o == "*" {
                cors.any = true;
                continue;
            }
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
                    cors.origins.push(o.to_ascii_lowercase());
                }
                _ => {
                    return Err(format!(
                        "{part:?} is not an origin: expected http(s)://host[:port] (no path), or *"
                    ));
                }
            }
        }
        Ok(cors)
    }

    pub fn is_off(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// Scheme and host compare without case, as URL origins do.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The middleware: answers preflights itself, marks allowed answers.
pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let cors = &s.inner.config.cors;
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| cors.allows(o));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        return match origin {
            Some(o) if allowed => preflight_ok(o, req.headers()),
            _ => {
                let shown = origin
                    .as_ref()
                    .and_then(|o| o.to_str().ok())
                    .unwrap_or("(none)");
                crate::respond(&s, Err(ApiError::origin_refused(shown, cors.is_off())))
            }
        };
    }
    let mut resp = next.run(req).await;
    if let Some(o) = origin.filter(|_| allowed) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.append(header::VARY, HeaderValue::from_static("origin"));
        // Not on the safelist, yet clients need them: when to retry a 503, why a 401.
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, www-authenticate"),
        );
    }
    resp
}

fn preflight_ok(origin: HeaderValue, req: &HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    let asked = req
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    // Browsers cache the answer for this long (Chromium caps it at 2 hours).
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("7200"),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_from_repeated_and_comma_separated_values() {
        let c = Cors::parse(&[
            "http://localhost:3000",
            "https://A.example, https://b.example/",
        ])
        .unwrap();
        assert!(c.allows("http://localhost:3000"));
        assert!(c.allows("https://a.example"));
        assert!(c.allows("https://b.example"));
        assert!(!c.allows("https://c.example"));
        assert!(!c.allows("http://localhost:3001"));
        assert!(Cors::parse::<&str>(&[]).unwrap().is_off());
        assert!(Cors::parse(&["*"]).unwrap().allows("https://any.where"));
        for bad in [
            "localhost:3000",
            "http://",
            "https://a.example/path",
            "ftp://x",
        ] {
            assert!(Cors::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
