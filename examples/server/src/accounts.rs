//! Accounts, sessions and the server's own records, in tables beside jilo's (same database,
//! `server_` prefix): users with argon2 password hashes, sessions stored as SHA-256 hashes of
//! random tokens, failed-login counters, pending OAuth authorizations, checkouts and the payment
//! events already applied.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use jilo::{Timestamp, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use jilo::store::{Backend, StoreUrl};

/// A failure of the accounts' tables.
pub type DbResult<T> = Result<T, sqlx::Error>;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS server_users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        google_sub TEXT UNIQUE,
        created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS server_sessions (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS server_sessions_user ON server_sessions (user_id)",
    "CREATE TABLE IF NOT EXISTS server_login_failures (
        email TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        last_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS server_oauth_pending (
        state_hash TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        user_id TEXT,
        url TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        verifier TEXT NOT NULL,
        binding TEXT,
        expires_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS server_checkouts (
        session_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        plan TEXT NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        paid_event TEXT,
        created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS server_payment_events (
        event_id TEXT PRIMARY KEY,
        payment_id TEXT NOT NULL,
        received_at BIGINT NOT NULL)",
];

/// A random opaque token (32 bytes, base64url) and the hash it is stored as.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// How a token is stored: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An argon2id hash (PHC string) of `password`, on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` matches `hash`, on a blocking thread. With no hash (an unknown email, an
/// account made by Google sign-in) a dummy hash is checked so the answer takes as long.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let dummy;
        let stored = match &hash {
            Some(h) => h.as_str(),
            None => {
                dummy = DUMMY_HASH.get_or_init(|| {
                    let salt = SaltString::generate(&mut rand::rngs::OsRng);
                    Argon2::default()
                        .hash_password(b"not a password", &salt)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                });
                dummy.as_str()
            }
        };
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && hash.is_some()
    })
    .await
    .unwrap_or(false)
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A user as the accounts table keeps them.
#[derive(Clone, Debug)]
pub struct Account {
    /// The id the ledger and jobs use.
    pub id: UserId,
    /// The email, lower-cased.
    pub email: String,
    /// The argon2 hash; `None` for an account made by Google sign-in only.
    pub password_hash: Option<String>,
}

/// Where a Google sign-in lands.
#[derive(Clone, Debug)]
pub enum GoogleAccount {
    /// The account already linked to the subject (or now linked to it).
    Found(Account),
    /// A new account.
    Opened(Account),
    /// The email belongs to an account with a password: not taken over.
    PasswordAccount,
    /// The email belongs to an account linked to another Google subject.
    OtherGoogleAccount,
}

/// A pending OAuth authorization kept between the redirect and its callback.
#[derive(Clone, Debug)]
pub struct PendingOAuth {
    /// `signin` or `youtube`.
    pub purpose: String,
    /// The user connecting a channel (`youtube`).
    pub user: Option<UserId>,
    /// The consent URL.
    pub url: String,
    /// The redirect URI sent.
    pub redirect_uri: String,
    /// The PKCE verifier, sealed.
    pub verifier: String,
    /// The hash of the nonce cookie the starting browser holds (sign-in).
    pub binding: Option<String>,
}

/// A checkout this server created.
#[derive(Clone, Debug)]
pub struct Checkout {
    /// The payment service's session id.
    pub session_id: String,
    /// Who pays.
    pub user: UserId,
    /// For which plan.
    pub plan: String,
    /// The amount, in minor units.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// The event that completed it, once one did.
    pub paid_event: Option<String>,
}

/// The server's tables.
#[derive(Clone, Debug)]
pub struct Accounts {
    pool: AnyPool,
    backend: Backend,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

/// Whether an error is a unique-constraint violation (a duplicate email, token, event).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

/// The server's own pool on the store's database (its tables sit beside jilo's). On SQLite
/// every connection waits on a busy database (the store's writer) and runs in WAL mode, as
/// the store's own do.
pub async fn connect(url: &StoreUrl) -> DbResult<AnyPool> {
    use sqlx::any::AnyPoolOptions;
    use sqlx::Executor;

    sqlx::any::install_default_drivers();
    let (text, sqlite) = match url {
        StoreUrl::SqliteFile(_) => {
            let (path, query) = url.sqlite_open_params().unwrap_or_default();
            (format!("sqlite://{path}?{query}"), true)
        }
        StoreUrl::SqliteMemory => ("sqlite::memory:".to_owned(), true),
        StoreUrl::Postgres(u) => (u.clone(), false),
    };
    let mut options = AnyPoolOptions::new().max_connections(8);
    if sqlite {
        options = options.after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; \
                     PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        });
    }
    options.connect(&text).await
}

impl Accounts {
    /// The tables on the server's pool ([`connect`]), created when missing (serialised across
    /// processes on Postgres).
    pub async fn open(pool: AnyPool, backend: Backend) -> DbResult<Self> {
        let mut conn = pool.acquire().await?;
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7411028)")
                .execute(&mut *conn)
                .await?;
        }
        let mut result = Ok(());
        for statement in SCHEMA {
            if let Err(e) = sqlx::query(statement).execute(&mut *conn).await {
                result = Err(e);
                break;
            }
        }
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7411028)")
                .execute(&mut *conn)
                .await?;
        }
        result?;
        Ok(Self { pool, backend })
    }

    /// Creates an account; a taken email is a unique violation.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: Option<&str>,
        google_sub: Option<&str>,
        now: Timestamp,
    ) -> DbResult<Account> {
        let id = UserId::new(format!("u_{}", uuid::Uuid::new_v4().simple()));
        sqlx::query(
            "INSERT INTO server_users (id, email, password_hash, google_sub, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(email)
        .bind(password_hash)
        .bind(google_sub)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(Account {
            id,
            email: email.to_owned(),
            password_hash: password_hash.map(str::to_owned),
        })
    }

    fn account(row: &sqlx::any::AnyRow) -> DbResult<Account> {
        Ok(Account {
            id: UserId::new(row.try_get::<String, _>("id")?),
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
        })
    }

    /// The account with this email.
    pub async fn by_email(&self, email: &str) -> DbResult<Option<Account>> {
        sqlx::query("SELECT id, email, password_hash FROM server_users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::account(&r))
            .transpose()
    }

    /// The account with this id.
    pub async fn by_id(&self, id: &UserId) -> DbResult<Option<Account>> {
        sqlx::query("SELECT id, email, password_hash FROM server_users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Self::account(&r))
            .transpose()
    }

    /// The account a Google subject signs in to: the one linked to that subject; else the
    /// one with its (verified) email when that account was made by Google sign-in and is not
    /// linked yet; else a new one. An account with a password for that email is never taken
    /// over by a Google sign-in (its owner logs in with the password), nor is one linked to
    /// another Google subject.
    pub async fn google_account(
        &self,
        sub: &str,
        email: &str,
        now: Timestamp,
    ) -> DbResult<GoogleAccount> {
        let by_sub =
            sqlx::query("SELECT id, email, password_hash FROM server_users WHERE google_sub = $1")
                .bind(sub)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(row) = by_sub {
            return Ok(GoogleAccount::Found(Self::account(&row)?));
        }
        let by_email = sqlx::query(
            "SELECT id, email, password_hash, google_sub FROM server_users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = by_email {
            let found = Self::account(&row)?;
            let linked: Option<String> = row.try_get("google_sub")?;
            if found.password_hash.is_some() {
                return Ok(GoogleAccount::PasswordAccount);
            }
            if linked.is_some() {
                return Ok(GoogleAccount::OtherGoogleAccount);
            }
            let updated = sqlx::query(
                "UPDATE server_users SET google_sub = $1 WHERE id = $2 AND google_sub IS NULL",
            )
            .bind(sub)
            .bind(found.id.to_string())
            .execute(&self.pool)
            .await?;
            return Ok(if updated.rows_affected() == 1 {
                GoogleAccount::Found(found)
            } else {
                GoogleAccount::OtherGoogleAccount
            });
        }
        match self.create_user(email, None, Some(sub), now).await {
            Ok(a) => Ok(GoogleAccount::Opened(a)),
            // Two callbacks at once: the other one made it.
            Err(e) if is_unique_violation(&e) => {
                match sqlx::query(
                    "SELECT id, email, password_hash FROM server_users WHERE google_sub = $1",
                )
                .bind(sub)
                .fetch_optional(&self.pool)
                .await?
                {
                    Some(row) => Ok(GoogleAccount::Found(Self::account(&row)?)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a session; answers its token.
    pub async fn open_session(
        &self,
        user: &UserId,
        now: Timestamp,
        ttl: Duration,
    ) -> DbResult<String> {
        let (token, hash) = new_token();
        sqlx::query(
            "INSERT INTO server_sessions (token_hash, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user.to_string())
        .bind(ms(now))
        .bind(ms(now.plus(ttl)))
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The user of a live session.
    pub async fn session_user(&self, token: &str, now: Timestamp) -> DbResult<Option<UserId>> {
        let row = sqlx::query(
            "SELECT user_id FROM server_sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get::<String, _>("user_id").map(UserId::new))
            .transpose()
    }

    /// Ends a session.
    pub async fn close_session(&self, token: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM server_sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reserves a login attempt for `email`, counted as a failure until it succeeds
    /// ([`Accounts::login_succeeded`] forgets it): `Some(wait)` when it must wait instead. The
    /// first five attempts in a row are free; after them each waits 2, 4, 8 … seconds after
    /// the last one, at most 15 minutes. The count moves by compare-and-set, so a burst of
    /// concurrent attempts gets one through, not one each.
    pub async fn reserve_login(&self, email: &str, now: Timestamp) -> DbResult<Option<Duration>> {
        let busy = Some(Duration::from_secs(1));
        let row =
            sqlx::query("SELECT failures, last_at FROM server_login_failures WHERE email = $1")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            let inserted = sqlx::query(
                "INSERT INTO server_login_failures (email, failures, last_at) VALUES ($1, 1, $2)
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind(email)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
            return Ok((inserted.rows_affected() != 1).then_some(busy).flatten());
        };
        let failures: i64 = row.try_get("failures")?;
        let last_at: i64 = row.try_get("last_at")?;
        if failures >= 5 {
            let exp = u32::try_from((failures - 4).min(10)).unwrap_or(10);
            let until = last_at.saturating_add((1_000i64 << exp).min(900_000));
            if until > ms(now) {
                return Ok(Some(Duration::from_millis(
                    (until - ms(now)).unsigned_abs(),
                )));
            }
        }
        let taken = sqlx::query(
            "UPDATE server_login_failures SET failures = failures + 1, last_at = $3
             WHERE email = $1 AND failures = $2",
        )
        .bind(email)
        .bind(failures)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok((taken.rows_affected() != 1).then_some(busy).flatten())
    }

    /// Forgets failed logins after a good one.
    pub async fn login_succeeded(&self, email: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM server_login_failures WHERE email = $1")
            .bind(email)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps a pending OAuth authorization under its state (hashed), for ten minutes.
    pub async fn keep_oauth(
        &self,
        state: &str,
        pending: &PendingOAuth,
        now: Timestamp,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO server_oauth_pending
             (state_hash, purpose, user_id, url, redirect_uri, verifier, binding, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token_hash(state))
        .bind(&pending.purpose)
        .bind(pending.user.as_ref().map(ToString::to_string))
        .bind(&pending.url)
        .bind(&pending.redirect_uri)
        .bind(&pending.verifier)
        .bind(&pending.binding)
        .bind(ms(now.plus(Duration::from_secs(600))))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (once) the pending authorization of a callback's state, if it is still live.
    pub async fn take_oauth(&self, state: &str, now: Timestamp) -> DbResult<Option<PendingOAuth>> {
        let hash = token_hash(state);
        let row = sqlx::query(
            "SELECT purpose, user_id, url, redirect_uri, verifier, binding, expires_at
             FROM server_oauth_pending WHERE state_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let taken = sqlx::query("DELETE FROM server_oauth_pending WHERE state_hash = $1")
            .bind(&hash)
            .execute(&self.pool)
            .await?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if taken.rows_affected() != 1 || expires_at <= ms(now) {
            return Ok(None);
        }
        Ok(Some(PendingOAuth {
            purpose: row.try_get("purpose")?,
            user: row
                .try_get::<Option<String>, _>("user_id")?
                .map(UserId::new),
            url: row.try_get("url")?,
            redirect_uri: row.try_get("redirect_uri")?,
            verifier: row.try_get("verifier")?,
            binding: row.try_get("binding")?,
        }))
    }

    /// Records a checkout this server created.
    pub async fn keep_checkout(&self, c: &Checkout, now: Timestamp) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO server_checkouts
             (session_id, user_id, plan, amount_minor, currency, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.session_id)
        .bind(c.user.to_string())
        .bind(&c.plan)
        .bind(c.amount_minor)
        .bind(&c.currency)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A checkout by its session id.
    pub async fn checkout(&self, session_id: &str) -> DbResult<Option<Checkout>> {
        let row = sqlx::query(
            "SELECT session_id, user_id, plan, amount_minor, currency, paid_event
             FROM server_checkouts WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Checkout {
                session_id: r.try_get("session_id")?,
                user: UserId::new(r.try_get::<String, _>("user_id")?),
                plan: r.try_get("plan")?,
                amount_minor: r.try_get("amount_minor")?,
                currency: r.try_get("currency")?,
                paid_event: r.try_get("paid_event")?,
            })
        })
        .transpose()
    }

    /// Whether a payment event was applied already.
    pub async fn event_seen(&self, event_id: &str) -> DbResult<bool> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM server_payment_events WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Records an applied payment event and marks its checkout paid; `false` when another
    /// delivery recorded it first.
    pub async fn record_event(
        &self,
        event_id: &str,
        payment_id: &str,
        session_id: &str,
        now: Timestamp,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO server_payment_events (event_id, payment_id, received_at)
             VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(payment_id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE server_checkouts SET paid_event = $1
             WHERE session_id = $2 AND paid_event IS NULL",
        )
        .bind(event_id)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1 AS one")
            .fetch_one(&self.pool)
            .await
            .map(|_| ())
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}
