//! Sign-in with an API key (a POST form), and sign-out.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use mailledger_access::Scope;
use maud::{DOCTYPE, html};
use serde::Deserialize;

use crate::auth::authenticate_key;
use crate::console::csrf::{self, Posted};
use crate::console::layout::head;
use crate::console::session::{COOKIE, TTL, cookie, over_tls, random_token, set_cookie};
use crate::console::{Failed, PageResult, error_page, see_other};
use crate::problem::ProblemType;
use crate::state::AppState;

/// The cookie that carries the sign-in form's token (before a session).
const SIGNIN_COOKIE: &str = "mailledger_signin";

/// The sign-in page, with `message` above the form, answered with `status`.
fn form_page(headers: &HeaderMap, status: StatusCode, message: Option<&str>) -> PageResult {
    let token = random_token()?;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head("Sign in")) }
            body {
                main.narrow {
                    h1 { "mailledger console" }
                    @if let Some(m) = message { p.problem role="alert" { (m) } }
                    form method="post" action="/console/signin" {
                        input type="hidden" name=(csrf::FIELD) value=(token);
                        label for="key" { "API key" }
                        input id="key" name="key" type="password" autocomplete="off" required
                            placeholder="mlk_…" size="60";
                        p { button type="submit" { "Sign in" } }
                    }
                    p { "The key is kept on the server for this session only (8 hours); the browser holds a random session id." }
                }
            }
        }
    };
    let secure = over_tls(headers);
    Ok((
        status,
        [(
            header::SET_COOKIE,
            set_cookie(SIGNIN_COOKIE, &token, 600, secure),
        )],
        Html(markup.into_string()),
    )
        .into_response())
}

/// `GET /console/signin`.
pub async fn form(headers: HeaderMap) -> PageResult {
    form_page(&headers, StatusCode::OK, None)
}

/// The first page a key's scopes may open.
fn home(has: impl Fn(Scope) -> bool) -> &'static str {
    if has(Scope::Read) {
        "/console/activity"
    } else if has(Scope::Erase) || has(Scope::Audit) {
        "/console/erasure"
    } else if has(Scope::Admin) {
        "/console/admin/keys"
    } else {
        "/console/activity"
    }
}

/// `POST /console/signin`: the key in the body; a session cookie and on to
/// the first page, or the form again (401) for a key that is not valid.
pub async fn submit(State(state): State<AppState>, req: Request) -> PageResult {
    let headers = req.headers().clone();
    let expected = cookie(&headers, SIGNIN_COOKIE).map(str::to_owned);
    let fields = csrf::read_fields(req, &state).await?;
    let given = fields
        .values(csrf::FIELD)
        .first()
        .copied()
        .unwrap_or_default();
    if !expected.is_some_and(|e| csrf::matches(&e, given)) {
        return Err(Failed::from(csrf::refused()));
    }
    let Some(key) = fields.values("key").first().map(|k| k.trim().to_owned()) else {
        return form_page(&headers, StatusCode::BAD_REQUEST, Some("Enter an API key."));
    };
    let caller = match authenticate_key(&key, &state) {
        Ok(c) => c,
        Err(p) if p.kind() == ProblemType::Unauthorized => {
            return form_page(
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That key is not valid (unknown, revoked, or mistyped)."),
            );
        }
        Err(p) => return Ok(error_page(&p)),
    };
    let (id, _) = state.console.start(key)?;
    let secure = over_tls(&headers);
    let mut res = see_other(home(|s| caller.has(s)));
    let h = res.headers_mut();
    for c in [
        set_cookie(COOKIE, &id, TTL.as_secs(), secure),
        set_cookie(SIGNIN_COOKIE, "", 0, secure),
    ] {
        if let Ok(v) = c.parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// A form with no fields but its token.
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// `POST /console/signout`: ends the session.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<Empty>,
) -> Response {
    state.console.end(&posted.session.id);
    let mut res = see_other("/console/signin");
    if let Ok(v) = set_cookie(COOKIE, "", 0, over_tls(&headers)).parse() {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
