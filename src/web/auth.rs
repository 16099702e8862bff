//! Who may use `/api`: the bearer token of `[http] token_file` and the HTTP
//! Basic login of `[http] username` / `password_file`. With both configured
//! either is accepted; with neither the API is open (loopback by default).

use std::sync::Arc;

use anyhow::Result;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::base64;
use super::config::HttpConfig;
use super::error::ApiError;

/// The credentials a request may carry, read once when the server starts.
pub(crate) struct Credentials {
    /// The content of `[http] token_file`.
    bearer: Option<String>,
    /// `user:password` of the Basic login in base64, exactly as a client sends
    /// it (RFC 7617), so a request is checked by comparing text, without
    /// decoding what a stranger sent.
    basic: Option<String>,
}

impl Credentials {
    /// Reads the token and password files `http` names (errors name the key).
    pub(crate) fn from_config(http: &HttpConfig) -> Result<Self> {
        Ok(Self {
            bearer: http.token()?,
            basic: http
                .basic_login()?
                .map(|(user, password)| base64::encode(format!("{user}:{password}").as_bytes())),
        })
    }

    /// A bearer token is configured.
    pub(crate) fn token_required(&self) -> bool {
        self.bearer.is_some()
    }

    /// A Basic login is configured.
    pub(crate) fn login_required(&self) -> bool {
        self.basic.is_some()
    }

    /// Whether the `Authorization` header's value matches one configured
    /// credential (scheme names are case-insensitive, RFC 9110).
    fn accepts(&self, authorization: &str) -> bool {
        let Some((scheme, given)) = authorization.trim().split_once(' ') else {
            return false;
        };
        let expected = if scheme.eq_ignore_ascii_case("Bearer") {
            &self.bearer
        } else if scheme.eq_ignore_ascii_case("Basic") {
            &self.basic
        } else {
            return false;
        };
        expected
            .as_deref()
            .is_some_and(|expected| same(given.trim().as_bytes(), expected.as_bytes()))
    }

    /// 401 saying what to send, with one `WWW-Authenticate` challenge per
    /// configured scheme; Basic first, so a browser asks for the login.
    fn refuse(&self, problem: &str) -> Response {
        let mut ways = Vec::new();
        if self.login_required() {
            ways.push("the HTTP Basic login of [http] username and password_file (curl -u USER)");
        }
        if self.token_required() {
            ways.push("Authorization: Bearer <token> (the content of [http] token_file)");
        }
        let message = format!("{problem}: send {}", ways.join(" or "));
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
        let headers = response.headers_mut();
        if self.login_required() {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pvtherm\""),
            );
        }
        if self.token_required() {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pvtherm\""),
            );
        }
        response
    }
}

/// Lets the request through when no credential is configured or when its
/// `Authorization` header carries one of them; 401 otherwise.
pub(crate) async fn require_credentials(
    State(credentials): State<Arc<Credentials>>,
    request: Request,
    next: Next,
) -> Response {
    if !credentials.token_required() && !credentials.login_required() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match given {
        Some(given) if credentials.accepts(given) => next.run(request).await,
        Some(_) => credentials.refuse("wrong token or login"),
        None => credentials.refuse("this server needs a token or login"),
    }
}

/// Compares in time that does not depend on where the first difference is,
/// so a secret cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials as [`Credentials::from_config`] makes them.
    fn credentials(bearer: Option<&str>, login: Option<(&str, &str)>) -> Credentials {
        Credentials {
            bearer: bearer.map(str::to_string),
            basic: login.map(|(u, p)| base64::encode(format!("{u}:{p}").as_bytes())),
        }
    }

    #[test]
    fn either_configured_scheme_is_accepted_and_nothing_else() {
        // base64("inspector:pa:ss") = aW5zcGVjdG9yOnBhOnNz
        let both = credentials(Some("tok"), Some(("inspector", "pa:ss")));
        assert!(both.accepts("Bearer tok"));
        assert!(both.accepts("basic aW5zcGVjdG9yOnBhOnNz"));
        assert!(!both.accepts("Basic aW5zcGVjdG9yOnBhOnN6"));
        assert!(!both.accepts("Bearer aW5zcGVjdG9yOnBhOnNz"));
        assert!(!both.accepts("Basic tok"));
        assert!(!both.accepts("Digest tok"));
        assert!(!both.accepts("tok"));
        let login_only = credentials(None, Some(("inspector", "pa:ss")));
        assert!(!login_only.accepts("Bearer "));
        assert!(login_only.accepts("Basic aW5zcGVjdG9yOnBhOnNz"));
    }

    #[test]
    fn a_refusal_challenges_basic_first_then_bearer() {
        let both = credentials(Some("tok"), Some(("inspector", "pa:ss")));
        let response = both.refuse("wrong token or login");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            challenges,
            ["Basic realm=\"pvtherm\"", "Bearer realm=\"pvtherm\""]
        );
    }
}
