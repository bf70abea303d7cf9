//! Accounts and sessions: registration, login, and token authentication.
//!
//! Passwords are hashed with Argon2id (the argon2 crate's default
//! parameters) on the blocking pool, since a hash takes tens of
//! milliseconds. Session tokens are 32 random bytes, base64url-encoded,
//! given to the client once; the server keeps only their SHA-256, so a
//! leaked database does not leak usable tokens.

use crate::store::{ServerStore, SessionRecord};
use crate::ServerError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chatsync_protocol::{DeviceId, UserId};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Longest username, in bytes.
pub const MAX_USERNAME_BYTES: usize = chatsync_protocol::MAX_USERNAME_BYTES;
/// Shortest password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest password, in bytes; bounds the hashing work one frame can cause.
pub const MAX_PASSWORD_BYTES: usize = chatsync_protocol::MAX_PASSWORD_BYTES;
/// Device names longer than this are truncated.
pub const MAX_DEVICE_NAME_BYTES: usize = 128;

/// A successful login.
#[derive(Clone, Debug)]
pub struct LoginOk {
    /// The account.
    pub user: UserId,
    /// The new session.
    pub device: DeviceId,
    /// The session token, to give to the client once.
    pub token: String,
}

/// Checks the account rules without touching storage.
pub fn validate_account(username: &str, password: &str) -> Result<(), ServerError> {
    if username.is_empty() || username.len() > MAX_USERNAME_BYTES {
        return Err(ServerError::InvalidAccount(format!(
            "the username must be 1 to {MAX_USERNAME_BYTES} bytes"
        )));
    }
    if username.chars().any(char::is_control) {
        return Err(ServerError::InvalidAccount(
            "the username must not contain control characters".into(),
        ));
    }
    if password.len() < MIN_PASSWORD_BYTES {
        return Err(ServerError::InvalidAccount(format!(
            "the password must be at least {MIN_PASSWORD_BYTES} bytes"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ServerError::InvalidAccount(format!(
            "the password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Creates an account.
pub async fn register(
    store: Arc<dyn ServerStore>,
    username: String,
    password: String,
) -> Result<UserId, ServerError> {
    validate_account(&username, &password)?;
    tokio::task::spawn_blocking(move || {
        let hash = hash_password(&password)?;
        store.create_account(&username, &hash)
    })
    .await?
}

/// Verifies the password and opens a new session.
pub async fn login(
    store: Arc<dyn ServerStore>,
    username: String,
    password: String,
    device_name: String,
) -> Result<LoginOk, ServerError> {
    tokio::task::spawn_blocking(move || {
        let account = store.account_by_name(&username)?;
        let stored = match &account {
            Some(a) => a.password_hash.as_str(),
            // Verify against a dummy hash anyway so that an unknown name
            // takes as long as a wrong password.
            None => dummy_hash()?,
        };
        let ok = verify_password(&password, stored)?;
        let Some(account) = account.filter(|_| ok) else {
            return Err(ServerError::BadCredentials);
        };
        let token = new_token()?;
        let device = store.create_session(
            account.id,
            truncate(&device_name, MAX_DEVICE_NAME_BYTES),
            &token_hash(&token),
        )?;
        Ok(LoginOk {
            user: account.id,
            device,
            token,
        })
    })
    .await?
}

/// Finds the session a token opens; `None` if it opens none: never
/// issued, revoked by `logout`, or older than `ttl` (expired).
pub async fn authenticate(
    store: Arc<dyn ServerStore>,
    token: String,
    ttl: Duration,
) -> Result<Option<SessionRecord>, ServerError> {
    tokio::task::spawn_blocking(move || {
        let hash = token_hash(&token);
        let found = store.session_by_token_hash(&hash)?;
        // The lookup is by hash of a 256-bit secret, so its timing reveals
        // nothing useful; the constant-time recheck guards against a backend
        // whose lookup is looser than byte equality (collation, prefix).
        let found = found.filter(|s| bool::from(s.token_hash.ct_eq(&hash)));
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        Ok(found.filter(|s| now_ms() < s.created_ms.saturating_add(ttl_ms)))
    })
    .await?
}

/// Revokes the session whose token hashes to `token_hash` (logout).
pub async fn logout(store: Arc<dyn ServerStore>, token_hash: [u8; 32]) -> Result<(), ServerError> {
    tokio::task::spawn_blocking(move || store.revoke_session(&token_hash).map(|_| ())).await?
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// SHA-256 of a session token, as stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hash_password(password: &str) -> Result<String, ServerError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| ServerError::Random(e.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| ServerError::PasswordHash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::PasswordHash(e.to_string()))
}

/// Argon2id with the crate's default (OWASP-recommended) parameters. A
/// fuzzing build (`cfg(fuzzing)`, set by cargo-fuzz) uses the smallest
/// parameters instead, so that a fuzz input that registers an account runs
/// in microseconds; no other build can select them.
fn hasher() -> Argon2<'static> {
    #[cfg(fuzzing)]
    {
        use argon2::{Algorithm, Params, Version};
        if let Ok(params) = Params::new(Params::MIN_M_COST, 1, 1, None) {
            return Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        }
    }
    Argon2::default()
}

fn verify_password(password: &str, stored: &str) -> Result<bool, ServerError> {
    let parsed = PasswordHash::new(stored).map_err(|e| ServerError::PasswordHash(e.to_string()))?;
    // The parameters come from the stored hash string.
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

fn dummy_hash() -> Result<&'static str, ServerError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_password("not a real password")?;
    Ok(DUMMY.get_or_init(|| h))
}

fn new_token() -> Result<String, ServerError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ServerError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn register_login_authenticate() {
        let store: Arc<dyn ServerStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let user = register(store.clone(), "alice".into(), "password1".into())
            .await
            .unwrap();
        assert!(matches!(
            register(store.clone(), "alice".into(), "password2".into()).await,
            Err(ServerError::UsernameTaken)
        ));
        assert!(matches!(
            register(store.clone(), "bob".into(), "short".into()).await,
            Err(ServerError::InvalidAccount(_))
        ));
        assert!(matches!(
            login(
                store.clone(),
                "alice".into(),
                "wrong-pass".into(),
                "d".into()
            )
            .await,
            Err(ServerError::BadCredentials)
        ));
        assert!(matches!(
            login(
                store.clone(),
                "nobody".into(),
                "password1".into(),
                "d".into()
            )
            .await,
            Err(ServerError::BadCredentials)
        ));
        let ok = login(
            store.clone(),
            "alice".into(),
            "password1".into(),
            "d".into(),
        )
        .await
        .unwrap();
        assert_eq!(ok.user, user);
        let day = Duration::from_secs(86_400);
        let s = authenticate(store.clone(), ok.token.clone(), day)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.user, s.device), (user, ok.device));
        assert!(authenticate(store.clone(), "bogus".into(), day)
            .await
            .unwrap()
            .is_none());
        // Expired: a zero lifetime is over at once.
        assert!(
            authenticate(store.clone(), ok.token.clone(), Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
        // Revoked.
        logout(store.clone(), token_hash(&ok.token)).await.unwrap();
        assert!(authenticate(store, ok.token, day).await.unwrap().is_none());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
