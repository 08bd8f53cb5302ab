//! Signing in and out, and the user's own account (password).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use cloudkeep_domain::SecretString;
use cloudkeep_domain::password::random_token;
use cloudkeep_server::api::auth as api;
use cloudkeep_server::wire::{LoginRequest, PasswordChange};
use cloudkeep_server::{AppState, Body, cookie};
use serde::Deserialize;

use crate::assets;
use crate::page::{Chrome, PageResult, Problem, Section, html, html_with, is_refusal};
use crate::session::{Form, Web};

/// The sign-in form's own CSRF token (double-submit): a page elsewhere
/// cannot sign a browser in to an account of its choosing.
const LOGIN_COOKIE: &str = "cloudkeep_login";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    css: &'static str,
    favicon: &'static str,
    login_token: String,
    next: String,
    email: String,
    error: Option<String>,
    signed_out: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

/// Only a path of this site: never somewhere else after signing in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

fn login_page(next: String, email: String, error: Option<String>, signed_out: bool) -> Response {
    let token = random_token("").expose().to_string();
    let page = LoginPage {
        css: assets::url("app.css"),
        favicon: assets::url("favicon.svg"),
        login_token: token.clone(),
        next,
        email,
        signed_out,
        error: error.clone(),
    };
    let status = if error.is_some() {
        axum::http::StatusCode::UNAUTHORIZED
    } else {
        axum::http::StatusCode::OK
    };
    let mut response = html_with(status, &page);
    let c = format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    if let Ok(v) = HeaderValue::from_str(&c) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    login_page(
        safe_next(q.next.as_deref()),
        String::new(),
        None,
        q.signed_out.is_some(),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(rename = "_login", default)]
    login: String,
}

pub async fn login(
    State(state): State<AppState>,
    client: cloudkeep_server::ClientAddr,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, LOGIN_COOKIE);
    if expected.is_none() || expected.as_deref() != Some(form.login.as_str()) {
        return login_page(
            next,
            form.email,
            Some("The sign-in form had expired; it is fresh again: sign in once more.".into()),
            false,
        );
    }
    let answer = api::login(
        State(state),
        client,
        Body(LoginRequest {
            email: form.email.clone(),
            password: SecretString::new(form.password),
        }),
    )
    .await;
    match answer {
        Ok(signed_in) => {
            let mut response = crate::page::see_other(&next);
            for c in signed_in.headers().get_all(header::SET_COOKIE) {
                response.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            response
        }
        Err(e) => login_page(next, form.email, Some(e.message), false),
    }
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    let answer = api::logout(State(state), web.caller(), headers).await?;
    let mut response = crate::page::see_other("/login?signed_out=1");
    for c in answer.headers().get_all(header::SET_COOKIE) {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct AccountQuery {
    notice: Option<String>,
}

pub async fn account(web: Web, Query(q): Query<AccountQuery>) -> PageResult {
    let notice = match q.notice.as_deref() {
        Some("password_changed") => {
            Some("Your password is changed, and your other sessions are signed out.".into())
        }
        _ => None,
    };
    account_page(&web, notice, None).await
}

async fn account_page(web: &Web, notice: Option<String>, error: Option<String>) -> PageResult {
    let chrome = Chrome::new(web, "Your account", Section::Account).with_notice(notice);
    let page = AccountPage {
        chrome,
        email: web.auth.user.email.clone(),
        error: error.clone(),
    };
    Ok(if error.is_some() {
        html_with(axum::http::StatusCode::UNPROCESSABLE_ENTITY, &page)
    } else {
        html(&page)
    })
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<PasswordForm>,
) -> PageResult {
    if form.new_password != form.confirm_password {
        return account_page(
            &web,
            None,
            Some("The new password and its confirmation differ; nothing was changed.".into()),
        )
        .await;
    }
    let answer = api::change_password(
        State(state.clone()),
        web.caller(),
        Body(PasswordChange {
            current_password: SecretString::new(form.current_password),
            new_password: SecretString::new(form.new_password),
        }),
    )
    .await;
    match answer {
        Ok(changed) => {
            let mut response = crate::page::see_other("/account?notice=password_changed");
            for c in changed.headers().get_all(header::SET_COOKIE) {
                response.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            Ok(response)
        }
        Err(e) if is_refusal(&e) => account_page(&web, None, Some(e.message)).await,
        Err(e) => Err(Problem::from(e)),
    }
}
