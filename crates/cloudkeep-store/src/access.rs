//! Organisations, users, logins, sessions and API tokens: the ways an
//! `OrgScope` comes to exist.

use chrono::{DateTime, Duration, Utc};
use cloudkeep_domain::login::{Attempts, Escalation, PER_ACCOUNT};
use cloudkeep_domain::password::{random_token, token_hash, verify_password};
use cloudkeep_domain::{OrgId, Role, SecretString, TokenId, UserId};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::AuditEntry;
use crate::page::{Cursor, Page, PageRequest};
use crate::{OrgScope, Result, Store, StoreError, Tx, conflict, parse, time, within};

#[derive(Debug, Clone, PartialEq)]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
    /// An auditor an owner granted the data (spend, inventory, tags).
    pub data_access: bool,
}

impl User {
    /// Whether this user may do `p`: the role's permissions, and for an
    /// auditor with an owner's grant, reading the data too.
    pub fn allows(&self, p: cloudkeep_domain::Permission) -> bool {
        self.role.allows(p)
            || (self.role == Role::Auditor
                && self.data_access
                && p == cloudkeep_domain::Permission::ReadData)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    Password,
    /// A browser session, with its CSRF token and its organisation's name
    /// (read with the session, for the page's header).
    Session {
        csrf_token: String,
        organisation: String,
    },
    Token(TokenId),
}

/// A caller whose identity is proven: its organisation scope and user.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub scope: OrgScope,
    pub user: User,
    pub credential: Credential,
}

impl Authenticated {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Token(t) => format!("token:{t}"),
            _ => format!("user:{}", self.user.id),
        }
    }
}

pub struct NewOrganisation {
    pub name: String,
    pub owner_email: String,
    pub owner_name: String,
    /// argon2id PHC string of the owner's password.
    pub owner_password_hash: String,
    pub actor: String,
}

pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: Option<String>,
}

/// A user found by email, not yet authenticated.
pub struct LoginCandidate {
    scope: OrgScope,
    user: User,
    password_hash: Option<String>,
}

impl std::fmt::Debug for LoginCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password hash.
        f.debug_struct("LoginCandidate")
            .field("org", &self.scope.org())
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

impl LoginCandidate {
    /// The scope and user if the password is right and the user active;
    /// otherwise the candidate back, to audit the failure.
    pub fn verify(
        self,
        password: &SecretString,
    ) -> std::result::Result<Authenticated, LoginCandidate> {
        let ok = !self.user.disabled
            && self
                .password_hash
                .as_deref()
                .is_some_and(|h| verify_password(password, h));
        if ok {
            Ok(Authenticated {
                scope: self.scope,
                user: self.user,
                credential: Credential::Password,
            })
        } else {
            Err(self)
        }
    }

    /// The organisation the login belongs to (an id, not a scope).
    pub fn org(&self) -> cloudkeep_domain::OrgId {
        self.scope.org()
    }

    pub fn user_id(&self) -> UserId {
        self.user.id
    }
}

fn normalise_email(email: &str) -> Result<String> {
    let e = email.trim().to_ascii_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'));
    if !valid {
        return Err(StoreError::Invalid(format!(
            "'{email}' is not an email address"
        )));
    }
    Ok(e)
}

fn user(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: parse(row, "user_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: parse(row, "role")?,
        created_at: time(row.try_get("created_at")?),
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        data_access: row.try_get::<i64, _>("data_access")? != 0,
    })
}

fn token(row: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: parse(row, "token_id")?,
        user_id: parse(row, "user_id")?,
        name: row.try_get("name")?,
        created_at: time(row.try_get("created_at")?),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(time),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(time),
    })
}

/// Tokens and session ids carry their organisation, so authentication is a
/// lookup within one organisation: `{prefix}{org}_{random}`.
pub(crate) fn split_bearer<'a>(prefix: &str, secret: &'a SecretString) -> Option<(OrgId, &'a str)> {
    let rest = secret.expose().strip_prefix(prefix)?;
    let (org, random) = rest.split_once('_')?;
    Some((org.parse().ok()?, random))
}

pub(crate) fn scoped_secret(prefix: &str, org: OrgId) -> SecretString {
    let random = random_token("");
    SecretString::new(format!(
        "{prefix}{}_{}",
        org.as_uuid().simple(),
        random.expose()
    ))
}

const USER_COLUMNS: &str = "user_id, email, name, role, created_at, disabled_at, data_access";
const TOKEN_PREFIX: &str = "ck_";
const SESSION_PREFIX: &str = "cks_";

impl Store {
    /// Creates an organisation and its owner (the bootstrap of a scope).
    pub async fn create_organisation(
        &self,
        new: NewOrganisation,
    ) -> Result<(OrgScope, Organisation, User)> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(StoreError::Invalid(
                "an organisation name is 1 to 200 characters".into(),
            ));
        }
        let email = normalise_email(&new.owner_email)?;
        let org = OrgId::new();
        let scope = OrgScope::new(org);
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO organisations (org_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.to_string())
            .bind(&name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let owner = insert_user(
            &mut tx,
            &scope,
            NewUser {
                email,
                name: new.owner_name,
                role: Role::Owner,
                password_hash: Some(new.owner_password_hash),
            },
            now,
            ElsewhereEmail::Refuse,
        )
        .await?;
        self.append(
            &mut tx,
            &scope,
            &AuditEntry::new(
                &new.actor,
                "organisation.created",
                format!("organisation:{org}"),
                json!({"name": name}),
            ),
        )
        .await?;
        self.append(
            &mut tx,
            &scope,
            &AuditEntry::new(
                &new.actor,
                "user.created",
                format!("user:{}", owner.id),
                json!({"email": owner.email, "role": "owner"}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((
            scope,
            Organisation {
                id: org,
                name,
                created_at: time(now),
            },
            owner,
        ))
    }

    pub async fn organisation(&self, scope: &OrgScope) -> Result<Organisation> {
        let row =
            sqlx::query("SELECT org_id, name, created_at FROM organisations WHERE org_id = $1")
                .bind(scope.id())
                .fetch_one(&self.pool)
                .await?;
        Ok(Organisation {
            id: parse(&row, "org_id")?,
            name: row.try_get("name")?,
            created_at: time(row.try_get("created_at")?),
        })
    }

    pub async fn create_user(&self, scope: &OrgScope, new: NewUser, actor: &str) -> Result<User> {
        let email = normalise_email(&new.email)?;
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        let (out, entry) = within(async {
            let role = new.role;
            let u = insert_user(
                &mut tx,
                scope,
                NewUser { email, ..new },
                now,
                ElsewhereEmail::AddQuietly,
            )
            .await?;
            let entry = AuditEntry::new(
                actor,
                "user.created",
                format!("user:{}", u.id),
                json!({"email": u.email, "role": role.as_str()}),
            );
            Ok((u, Some(entry)))
        })
        .await?;
        if let Some(entry) = entry {
            self.record(&mut tx, scope, &entry).await?;
        }
        tx.commit_recorded().await?;
        Ok(out)
    }

    /// The organisation's users, oldest first.
    pub async fn users(&self, scope: &OrgScope, page: &PageRequest) -> Result<Page<User>> {
        let (after_ms, after_id) = page.time_and_id(i64::MIN)?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND (created_at > $2 OR (created_at = $2 AND user_id > $3)) \
             ORDER BY created_at, user_id LIMIT $4"
        ))
        .bind(scope.id())
        .bind(after_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let users = rows.iter().map(user).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(users, page, |u| {
            Cursor::of(&[
                &u.created_at.timestamp_millis().to_string(),
                &u.id.to_string(),
            ])
        }))
    }

    /// How many active owners the organisation has (the last-owner rule).
    pub async fn active_owners(&self, scope: &OrgScope) -> Result<usize> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE org_id = $1 AND role = 'owner' AND disabled_at IS NULL",
        )
        .bind(scope.id())
        .fetch_one(&self.pool)
        .await?;
        Ok(n as usize)
    }

    pub async fn user(&self, scope: &OrgScope, id: UserId) -> Result<User> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND user_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
        user(&row)
    }

    pub async fn set_role(
        &self,
        scope: &OrgScope,
        id: UserId,
        role: Role,
        actor: &str,
    ) -> Result<User> {
        let entry = AuditEntry::new(
            actor,
            "user.role_changed",
            format!("user:{id}"),
            json!({"role": role.as_str()}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query("UPDATE users SET role = $3 WHERE org_id = $1 AND user_id = $2")
                .bind(scope.id())
                .bind(id.to_string())
                .bind(role.as_str())
                .execute(&mut **tx)
                .await?;
            found(done.rows_affected(), "user")
        })
        .await?;
        tx.commit().await?;
        self.user(scope, id).await
    }

    /// Disables a user (their sessions are deleted and their API tokens
    /// stop at once, since both are checked against `disabled_at`) or
    /// enables them again; audited.
    pub async fn set_user_disabled(
        &self,
        scope: &OrgScope,
        id: UserId,
        disabled: bool,
        actor: &str,
    ) -> Result<User> {
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        let entry = AuditEntry::new(actor, action, format!("user:{id}"), json!({}));
        let mut tx = self.audited(scope, entry).await?;
        let now = self.now_ms();
        within(async {
            let done =
                sqlx::query("UPDATE users SET disabled_at = $3 WHERE org_id = $1 AND user_id = $2")
                    .bind(scope.id())
                    .bind(id.to_string())
                    .bind(disabled.then_some(now))
                    .execute(&mut **tx)
                    .await?;
            found(done.rows_affected(), "user")?;
            if disabled {
                sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND user_id = $2")
                    .bind(scope.id())
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.user(scope, id).await
    }

    /// Sets a user's password (an argon2id PHC string), ending their sessions.
    pub async fn set_password(
        &self,
        scope: &OrgScope,
        id: UserId,
        password_hash: &str,
        actor: &str,
    ) -> Result<()> {
        let entry = AuditEntry::new(actor, "user.password_set", format!("user:{id}"), json!({}));
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE users SET password_hash = $3 WHERE org_id = $1 AND user_id = $2",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(password_hash)
            .execute(&mut **tx)
            .await?;
            found(done.rows_affected(), "user")?;
            sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND user_id = $2")
                .bind(scope.id())
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audits a failed password attempt in the login's organisation.
    /// A wrong password for an existing account (where the attempt is not
    /// a sign-in, such as a password change).
    pub async fn audit_wrong_password(&self, candidate: &LoginCandidate) -> Result<()> {
        self.audit_for(candidate, "user.login_failed", json!({}))
            .await
    }

    /// A failed sign-in of an existing account, with the failures counted
    /// so far; when it starts the delays or locks the account, that too,
    /// so the organisation's owners see it in the audit log.
    pub async fn audit_login_failure(
        &self,
        candidate: &LoginCandidate,
        attempts: &Attempts,
        escalation: Escalation,
    ) -> Result<()> {
        self.audit_for(
            candidate,
            "user.login_failed",
            json!({ "failures": attempts.failures }),
        )
        .await?;
        let (action, until) = match escalation {
            Escalation::None => return Ok(()),
            Escalation::Delayed => (
                "user.login_delayed",
                attempts.last_failure + PER_ACCOUNT.delay_after(attempts.failures),
            ),
            Escalation::Locked => (
                "user.login_locked",
                attempts.locked_until.unwrap_or(attempts.last_failure),
            ),
        };
        self.audit_for(
            candidate,
            action,
            json!({ "failures": attempts.failures, "until": until.to_rfc3339() }),
        )
        .await
    }

    async fn audit_for(
        &self,
        candidate: &LoginCandidate,
        action: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        let user = candidate.user.id;
        self.audit(
            &candidate.scope,
            AuditEntry::new(
                format!("user:{user}"),
                action,
                format!("user:{user}"),
                details,
            ),
        )
        .await
    }

    /// Looks up a login by email (the one unscoped lookup, by design).
    pub async fn find_login(&self, email: &str) -> Result<Option<LoginCandidate>> {
        let Ok(email) = normalise_email(email) else {
            return Ok(None);
        };
        let Some(route) =
            sqlx::query("SELECT org_id, user_id FROM login_directory WHERE email = $1")
                .bind(&email)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let scope = OrgScope::new(parse(&route, "org_id")?);
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE org_id = $1 AND user_id = $2"
        ))
        .bind(scope.id())
        .bind(route.try_get::<String, _>("user_id")?)
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(LoginCandidate {
            user: user(&row)?,
            password_hash: row.try_get("password_hash")?,
            scope,
        }))
    }

    /// Issues an API token for a user; the plaintext is returned once and
    /// only its hash is kept.
    pub async fn create_api_token(
        &self,
        scope: &OrgScope,
        user_id: UserId,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        actor: &str,
    ) -> Result<(ApiToken, SecretString)> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(StoreError::Invalid(
                "a token name is 1 to 100 characters".into(),
            ));
        }
        let secret = scoped_secret(TOKEN_PREFIX, scope.org());
        let id = TokenId::new();
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "token.issued",
            format!("token:{id}"),
            json!({"name": name, "user": user_id}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let owner = sqlx::query(
                "SELECT user_id FROM users WHERE org_id = $1 AND user_id = $2 AND disabled_at IS NULL",
            )
            .bind(scope.id())
            .bind(user_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
            if owner.is_none() {
                return Err(StoreError::NotFound { what: "user" });
            }
            sqlx::query(
                "INSERT INTO api_tokens (org_id, token_id, user_id, name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(user_id.to_string())
            .bind(name)
            .bind(token_hash(&secret))
            .bind(now)
            .bind(expires_at.map(|t| t.timestamp_millis()))
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        let t = ApiToken {
            id,
            user_id,
            name: name.to_string(),
            created_at: time(now),
            // As stored: to the millisecond.
            expires_at: expires_at.map(|t| time(t.timestamp_millis())),
            revoked_at: None,
        };
        Ok((t, secret))
    }

    /// API tokens, oldest first; only `user`'s when given.
    pub async fn api_tokens(
        &self,
        scope: &OrgScope,
        user: Option<UserId>,
        page: &PageRequest,
    ) -> Result<Page<ApiToken>> {
        let (after_ms, after_id) = page.time_and_id(i64::MIN)?;
        let rows = sqlx::query(
            "SELECT token_id, user_id, name, created_at, expires_at, revoked_at FROM api_tokens \
             WHERE org_id = $1 AND ($2 = '' OR user_id = $2) AND (created_at > $3 OR (created_at = $3 AND token_id > $4)) \
             ORDER BY created_at, token_id LIMIT $5",
        )
        .bind(scope.id())
        .bind(user.map(|u| u.to_string()).unwrap_or_default())
        .bind(after_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let tokens = rows.iter().map(token).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(tokens, page, |t| {
            Cursor::of(&[
                &t.created_at.timestamp_millis().to_string(),
                &t.id.to_string(),
            ])
        }))
    }

    pub async fn api_token(&self, scope: &OrgScope, id: TokenId) -> Result<ApiToken> {
        let row = sqlx::query(
            "SELECT token_id, user_id, name, created_at, expires_at, revoked_at FROM api_tokens WHERE org_id = $1 AND token_id = $2",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "token" })?;
        token(&row)
    }

    pub async fn revoke_api_token(&self, scope: &OrgScope, id: TokenId, actor: &str) -> Result<()> {
        let now = self.now_ms();
        let entry = AuditEntry::new(actor, "token.revoked", format!("token:{id}"), json!({}));
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query("UPDATE api_tokens SET revoked_at = $3 WHERE org_id = $1 AND token_id = $2 AND revoked_at IS NULL")
                .bind(scope.id())
                .bind(id.to_string())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            found(done.rows_affected(), "token")
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The caller behind an API token, if it is valid, unexpired and unrevoked.
    pub async fn authenticate_token(&self, secret: &SecretString) -> Result<Option<Authenticated>> {
        let Some((org, _)) = split_bearer(TOKEN_PREFIX, secret) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT t.token_id, {} FROM api_tokens t JOIN users u ON u.org_id = t.org_id AND u.user_id = t.user_id \
             WHERE t.org_id = $1 AND t.token_hash = $2 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $3) \
               AND u.disabled_at IS NULL",
            USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(org.to_string())
        .bind(token_hash(secret))
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Authenticated {
            scope: OrgScope::new(org),
            user: user(&row)?,
            credential: Credential::Token(parse(&row, "token_id")?),
        }))
    }

    /// Starts a browser session; answers its secret and CSRF token.
    pub async fn create_session(
        &self,
        auth: &Authenticated,
        lifetime: Duration,
    ) -> Result<(SecretString, String)> {
        let secret = scoped_secret(SESSION_PREFIX, auth.scope.org());
        let csrf = random_token("").expose().to_string();
        let now = self.now_ms();
        self.execute_write(
            sqlx::query(
                "INSERT INTO sessions (org_id, session_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(auth.scope.id())
            .bind(token_hash(&secret))
            .bind(auth.user.id.to_string())
            .bind(&csrf)
            .bind(now)
            .bind(now + lifetime.num_milliseconds()),
        )
        .await?;
        Ok((secret, csrf))
    }

    pub async fn authenticate_session(
        &self,
        secret: &SecretString,
    ) -> Result<Option<Authenticated>> {
        let Some((org, _)) = split_bearer(SESSION_PREFIX, secret) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT s.csrf_token, o.name AS org_name, {} FROM sessions s JOIN users u ON u.org_id = s.org_id AND u.user_id = s.user_id \
             JOIN organisations o ON o.org_id = s.org_id WHERE s.org_id = $1 AND s.session_hash = $2 AND s.expires_at > $3 AND u.disabled_at IS NULL",
            USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(org.to_string())
        .bind(token_hash(secret))
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Authenticated {
            scope: OrgScope::new(org),
            user: user(&row)?,
            credential: Credential::Session {
                csrf_token: row.try_get("csrf_token")?,
                organisation: row.try_get("org_name")?,
            },
        }))
    }

    pub async fn delete_session(&self, secret: &SecretString) -> Result<()> {
        if let Some((org, _)) = split_bearer(SESSION_PREFIX, secret) {
            self.execute_write(
                sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND session_hash = $2")
                    .bind(org.to_string())
                    .bind(token_hash(secret)),
            )
            .await?;
        }
        Ok(())
    }
}

/// `Ok` when a statement found its row, else `NotFound`.
pub(crate) fn found(rows_affected: u64, what: &'static str) -> Result<()> {
    if rows_affected == 0 {
        Err(StoreError::NotFound { what })
    } else {
        Ok(())
    }
}

/// Whether an email another organisation's user signs in with may be added.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ElsewhereEmail {
    /// Refused (a new organisation's owner must be able to sign in).
    Refuse,
    /// Added, without a sign-in: answering "already exists" would tell one
    /// customer who another's users are. The user is listed here and can
    /// use API tokens, but signs in to the other organisation.
    AddQuietly,
}

async fn insert_user(
    tx: &mut Tx,
    scope: &OrgScope,
    new: NewUser,
    now: i64,
    elsewhere: ElsewhereEmail,
) -> Result<User> {
    let id = UserId::new();
    let name = new.name.trim().to_string();
    if name.is_empty() {
        return Err(StoreError::Invalid("a user needs a name".into()));
    }
    let route = match elsewhere {
        ElsewhereEmail::Refuse => {
            "INSERT INTO login_directory (email, org_id, user_id) VALUES ($1, $2, $3)"
        }
        ElsewhereEmail::AddQuietly => {
            "INSERT INTO login_directory (email, org_id, user_id) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING"
        }
    };
    sqlx::query(route)
        .bind(&new.email)
        .bind(scope.id())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(|e| conflict(e, "user with email", &new.email))?;
    sqlx::query(
        "INSERT INTO users (org_id, user_id, email, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(scope.id())
    .bind(id.to_string())
    .bind(&new.email)
    .bind(&name)
    .bind(new.role.as_str())
    .bind(new.password_hash)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict(e, "user with email", &new.email))?;
    Ok(User {
        id,
        email: new.email,
        name,
        role: new.role,
        created_at: time(now),
        disabled: false,
        data_access: false,
    })
}
