//! Users, groups, sessions and API tokens, access lists and the rights they give.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Catalog, CatalogError, Change, Perms, Principal, Result, Role};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub groups: Vec<i64>,
    pub created: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub members: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub user_id: i64,
    /// `session` or `api`.
    pub kind: String,
    pub name: String,
    pub created: String,
    pub expires: String,
    pub revoked: bool,
}

/// One grant of an access list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// `user` or `group`.
    pub principal: String,
    pub id: i64,
    /// Any of `read`, `write`, `download`, `delete`.
    pub perms: Vec<String>,
}

/// Argon2id with the crate's defaults (OWASP's minimum: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CatalogError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Argon2 takes 19 MiB and tens of milliseconds per call: at most one per core at a time, off
/// the async threads, so that a burst of logins can neither exhaust memory nor stall the API.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
});

pub async fn hash_password_async(password: &str) -> Result<String> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| CatalogError::Hash(e.to_string()))?;
    let p = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&p))
        .await
        .map_err(|e| CatalogError::Hash(e.to_string()))?
}

pub async fn verify_password_async(password: &str, hash: String) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    let p = password.to_string();
    tokio::task::spawn_blocking(move || verify_password(&p, &hash))
        .await
        .unwrap_or(false)
}

/// A fresh opaque secret: 256 random bits, URL-safe.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let mut s = String::with_capacity(prefix.len() + 64);
    s.push_str(prefix);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// What is stored for a token: its SHA-256 (the secret itself never is).
pub fn token_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < 10 {
        return Err(CatalogError::invalid(
            "password",
            "must be at least 10 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(CatalogError::invalid("password", "longer than 1024 bytes"));
    }
    Ok(())
}

fn check_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            field,
            "1-64 characters: letters, digits, . _ - @",
        ))
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl Catalog {
    async fn groups_of(&self, user_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT group_id FROM group_members WHERE user_id = $1 ORDER BY 1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(Into::into))
            .collect()
    }

    fn user_of(&self, r: &AnyRow, groups: Vec<i64>) -> Result<User> {
        Ok(User {
            id: r.try_get("id")?,
            username: r.try_get("username")?,
            display_name: r.try_get("display_name")?,
            role: Role::parse(&r.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
            disabled: r.try_get::<i64, _>("disabled")? != 0,
            groups,
            created: super::rfc3339(r.try_get("created_ms")?),
        })
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        password: &str,
    ) -> Result<User> {
        check_name("username", username)?;
        check_password_rules(password)?;
        let hash = hash_password_async(password).await?;
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO users (username, display_name, role, password_hash, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
        )
        .bind(username)
        .bind(display_name)
        .bind(role.as_str())
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                CatalogError::Conflict(format!("user {username:?} exists"))
            } else {
                e.into()
            }
        })?;
        let user = self.user_of(&r, Vec::new())?;
        let c = self
            .record(&mut tx, "user", user.id, "created", None)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(user)
    }

    pub async fn user(&self, id: i64) -> Result<User> {
        let r = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("user {id}")))?;
        let groups = self.groups_of(id).await?;
        self.user_of(&r, groups)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let r = sqlx::query("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        match r {
            Some(r) => Ok(Some(self.user(r.try_get(0)?).await?)),
            None => Ok(None),
        }
    }

    pub async fn users(&self, after: i64, limit: i64) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            out.push(self.user_of(r, self.groups_of(id).await?)?);
        }
        Ok(out)
    }

    /// Changes a user; `None` leaves a field as it is. Disabling or demoting a user ends their
    /// sessions and tokens.
    pub async fn update_user(
        &self,
        id: i64,
        display_name: Option<&str>,
        role: Option<Role>,
        disabled: Option<bool>,
        password: Option<&str>,
    ) -> Result<User> {
        if let Some(p) = password {
            check_password_rules(p)?;
        }
        let hash = match password {
            Some(p) => Some(hash_password_async(p).await?),
            None => None,
        };
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        // Serialises role changes: two admins demoting each other cannot leave none.
        self.order_lock(&mut tx).await?;
        let before = self.user(id).await?;
        if before.role == Role::Admin
            && (role.is_some_and(|r| r != Role::Admin) || disabled == Some(true))
        {
            let admins: i64 = sqlx::query(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id <> $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if admins == 0 {
                return Err(CatalogError::Conflict(
                    "this is the last active admin: make another admin first".into(),
                ));
            }
        }
        sqlx::query(
            "UPDATE users SET display_name = COALESCE($2, display_name), role = COALESCE($3, role), \
             disabled = COALESCE($4, disabled), password_hash = COALESCE($5, password_hash), \
             updated_ms = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(display_name)
        .bind(role.map(Role::as_str))
        .bind(disabled.map(i64::from))
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let demoted = role.is_some_and(|r| r != before.role);
        if demoted || disabled == Some(true) || password.is_some() {
            sqlx::query(
                "UPDATE tokens SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms IS NULL \
                 AND (kind = 'session' OR $3 = 1)",
            )
            .bind(id)
            .bind(now)
            .bind(i64::from(demoted || disabled == Some(true)))
            .execute(&mut *tx)
            .await?;
        }
        let c = self.record(&mut tx, "user", id, "updated", None).await?;
        tx.commit().await?;
        self.publish([c]);
        self.user(id).await
    }

    /// Checks a user name and password; `None` for a wrong one, an unknown user or a disabled
    /// account (the same answer, and the same work, for all three).
    pub async fn check_login(&self, username: &str, password: &str) -> Result<Option<User>> {
        let r = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        // A dummy hash keeps the time of an unknown user equal to that of a wrong password.
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jd9A0r5q0oUxp5b0jG0Xr2p0q7wQkQb3l3iQ3mC2Yt8";
        let hash: String = match &r {
            Some(r) => r.try_get("password_hash")?,
            None => DUMMY.to_string(),
        };
        let ok = verify_password_async(password, hash).await;
        match r {
            Some(r) if ok && r.try_get::<i64, _>("disabled")? == 0 => {
                let id: i64 = r.try_get("id")?;
                let g = self.groups_of(id).await?;
                Ok(Some(self.user_of(&r, g)?))
            }
            _ => Ok(None),
        }
    }

    /// Issues a session or API token; the secret is returned once and only its hash is kept.
    pub async fn issue_token(
        &self,
        user_id: i64,
        kind: &str,
        name: &str,
        ttl_ms: i64,
    ) -> Result<(String, TokenInfo)> {
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(CatalogError::invalid("name", "at most 200 printable bytes"));
        }
        let secret = new_secret(if kind == "api" { "ant_" } else { "ants_" });
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO tokens (user_id, kind, name, hash, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(user_id)
        .bind(kind)
        .bind(name)
        .bind(token_hash(&secret))
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .fetch_one(&mut *tx)
        .await?;
        let info = token_of(&r)?;
        self.audit_change(&mut tx).await?;
        tx.commit().await?;
        Ok((secret, info))
    }

    /// The principal behind a secret, when it is valid: known, not revoked, not expired, and
    /// its user not disabled.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<(Principal, i64)>> {
        let now = self.now_ms();
        let r = sqlx::query(
            "SELECT t.id AS token_id, u.id AS user_id, u.username, u.role FROM tokens t \
             JOIN users u ON u.id = t.user_id \
             WHERE t.hash = $1 AND t.revoked_ms IS NULL AND t.expires_ms > $2 AND u.disabled = 0",
        )
        .bind(token_hash(secret))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let user_id: i64 = r.try_get("user_id")?;
        let groups = self.groups_of(user_id).await?;
        Ok(Some((
            Principal {
                user_id,
                username: r.try_get("username")?,
                role: Role::parse(&r.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
                groups: groups.into(),
            },
            r.try_get("token_id")?,
        )))
    }

    /// Whether a token still stands: not revoked, not expired, its user not disabled.
    pub async fn token_valid(&self, token_id: i64) -> Result<bool> {
        Ok(self.token_principal(token_id).await?.is_some())
    }

    /// The principal a token stands for as of now (the user's present role and groups), when
    /// it still stands: not revoked, not expired, its user not disabled.
    pub async fn token_principal(&self, token_id: i64) -> Result<Option<Principal>> {
        let r = sqlx::query(
            "SELECT u.id AS user_id, u.username, u.role FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.revoked_ms IS NULL AND t.expires_ms > $2 AND u.disabled = 0",
        )
        .bind(token_id)
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let user_id: i64 = r.try_get("user_id")?;
        let groups = self.groups_of(user_id).await?;
        Ok(Some(Principal {
            user_id,
            username: r.try_get("username")?,
            role: Role::parse(&r.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
            groups: groups.into(),
        }))
    }

    pub async fn tokens(
        &self,
        user_id: Option<i64>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens WHERE ($1 = 0 OR user_id = $1) AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(user_id.unwrap_or(0))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_of).collect()
    }

    /// Revokes a token; a caller who is not admin may revoke only their own.
    pub async fn revoke_token(&self, who: &Principal, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE tokens SET revoked_ms = $3 WHERE id = $1 AND ($2 = 0 OR user_id = $2) \
             AND revoked_ms IS NULL",
        )
        .bind(id)
        .bind(if who.is_admin() { 0 } else { who.user_id })
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("token {id}")));
        }
        self.audit_change(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_group(&self, name: &str, description: &str) -> Result<Group> {
        check_name("name", name)?;
        if description.len() > 10_000 || description.contains('\0') {
            return Err(CatalogError::invalid(
                "description",
                "at most 10000 bytes, no NUL",
            ));
        }
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO groups (name, description, created_ms) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(description)
        .bind(self.now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                CatalogError::Conflict(format!("group {name:?} exists"))
            } else {
                e.into()
            }
        })?;
        let id: i64 = r.try_get(0)?;
        let c = self.record(&mut tx, "group", id, "created", None).await?;
        tx.commit().await?;
        self.publish([c]);
        self.group(id).await
    }

    pub async fn group(&self, id: i64) -> Result<Group> {
        let r = sqlx::query("SELECT * FROM groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("group {id}")))?;
        let members =
            sqlx::query("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY 1")
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<std::result::Result<_, _>>()?;
        Ok(Group {
            id,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            members,
        })
    }

    pub async fn groups(&self, after: i64, limit: i64) -> Result<Vec<Group>> {
        let ids: Vec<i64> = sqlx::query("SELECT id FROM groups WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::new();
        for id in ids {
            out.push(self.group(id).await?);
        }
        Ok(out)
    }

    pub async fn delete_group(&self, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("group {id}")));
        }
        sqlx::query("DELETE FROM acl WHERE principal_kind = 'group' AND principal_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let c = self.record(&mut tx, "group", id, "deleted", None).await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    pub async fn set_member(&self, group_id: i64, user_id: i64, member: bool) -> Result<Group> {
        self.group(group_id).await?;
        self.user(user_id).await?;
        let mut tx = self.begin().await?;
        if member {
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
        } else {
            sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        }
        .bind(group_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let c = self
            .record(&mut tx, "group", group_id, "updated", None)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.group(group_id).await
    }

    /// The rights of `who` on an asset; `None` when it does not exist or they may not read it.
    pub async fn asset_perms(&self, who: &Principal, asset_id: i64) -> Result<Option<Perms>> {
        if who.role.base().has(Perms::READ) && who.role.base() == who.role.cap() {
            // Admin and service roles hold the same rights on every asset.
            let found = sqlx::query("SELECT owner_id FROM assets WHERE id = $1")
                .bind(asset_id)
                .fetch_optional(&self.pool)
                .await?;
            return Ok(found.and(Some(who.role.cap())));
        }
        let r = sqlx::query(AssertSqlSafe(GRANTED_SQL.as_str()))
            .bind(asset_id)
            .bind(who.user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = r else { return Ok(None) };
        let owner: Option<i64> = r.try_get("owner_id")?;
        let granted: i64 = r.try_get("granted")?;
        Ok(effective(who, owner, granted))
    }

    /// The access list of an asset or collection.
    pub async fn acl(&self, object_kind: &str, object_id: i64) -> Result<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT principal_kind, principal_id, perms FROM acl WHERE object_kind = $1 \
             AND object_id = $2 ORDER BY principal_kind, principal_id",
        )
        .bind(object_kind)
        .bind(object_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Grant {
                    principal: r.try_get("principal_kind")?,
                    id: r.try_get("principal_id")?,
                    perms: Perms(r.try_get("perms")?)
                        .names()
                        .into_iter()
                        .map(String::from)
                        .collect(),
                })
            })
            .collect()
    }

    /// Replaces the access list of an asset or collection.
    pub async fn set_acl(
        &self,
        object_kind: &str,
        object_id: i64,
        grants: &[Grant],
    ) -> Result<Vec<Grant>> {
        let mut parsed = Vec::new();
        for g in grants {
            let p = Perms::from_names(&g.perms)?;
            match g.principal.as_str() {
                "user" => {
                    self.user(g.id).await.map_err(|_| {
                        CatalogError::invalid("grants", format!("no user {}", g.id))
                    })?;
                }
                "group" => {
                    self.group(g.id).await.map_err(|_| {
                        CatalogError::invalid("grants", format!("no group {}", g.id))
                    })?;
                }
                other => {
                    return Err(CatalogError::invalid(
                        "grants",
                        format!("principal {other:?} is not user or group"),
                    ))
                }
            }
            parsed.push((g.principal.clone(), g.id, p));
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM acl WHERE object_kind = $1 AND object_id = $2")
            .bind(object_kind)
            .bind(object_id)
            .execute(&mut *tx)
            .await?;
        for (kind, id, p) in parsed {
            sqlx::query(
                "INSERT INTO acl (object_kind, object_id, principal_kind, principal_id, perms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (object_kind, object_id, principal_kind, \
                 principal_id) DO UPDATE SET perms = excluded.perms",
            )
            .bind(object_kind)
            .bind(object_id)
            .bind(kind)
            .bind(id)
            .bind(p.0)
            .execute(&mut *tx)
            .await?;
        }
        let asset = (object_kind == "asset").then_some(object_id);
        let c: Change = self
            .record(&mut tx, object_kind, object_id, "updated", asset)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.acl(object_kind, object_id).await
    }
}

/// Whether principal `$2` is named by an `acl` row (directly or through a group).
pub(crate) const PRINCIPAL_MATCH: &str =
    "((acl.principal_kind = 'user' AND acl.principal_id = $2) \
     OR (acl.principal_kind = 'group' AND acl.principal_id IN \
     (SELECT group_id FROM group_members WHERE user_id = $2)))";

/// Owner and the OR of the grants reaching principal `$2` on asset `$1`, on the asset itself or
/// on a collection holding it (bit by bit: neither backend has one OR aggregate for both). A
/// collection shares its assets for reading and downloading only: writing and deleting an asset
/// are granted on the asset.
static GRANTED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT a.owner_id, COALESCE((SELECT MAX(perms & 1) + MAX(perms & 2) + MAX(perms & 4) \
           + MAX(perms & 8) + MAX(perms & 16) FROM ( \
             SELECT acl.perms FROM acl WHERE acl.object_kind = 'asset' AND acl.object_id = a.id \
               AND {PRINCIPAL_MATCH} \
             UNION ALL \
             SELECT acl.perms & 5 FROM collection_assets ca JOIN acl ON acl.object_kind = 'collection' \
               AND acl.object_id = ca.collection_id WHERE ca.asset_id = a.id AND {PRINCIPAL_MATCH} \
           ) p), 0) AS granted FROM assets a WHERE a.id = $1"
    )
});

/// The rights a principal holds given the owner and the grants that reach them; `None` when
/// they cannot read.
pub fn effective(who: &Principal, owner: Option<i64>, granted: i64) -> Option<Perms> {
    let mut p = who.role.base() | Perms(granted);
    if owner == Some(who.user_id) {
        // Owning an asset is no approval of it: that right is granted or a role's.
        p = p | Perms(Perms::ALL.0 & !Perms::APPROVE.0);
    }
    let p = p & who.role.cap();
    p.has(Perms::READ).then_some(p)
}

fn token_of(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        created: super::rfc3339(r.try_get("created_ms")?),
        expires: super::rfc3339(r.try_get("expires_ms")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_ms")?.is_some(),
    })
}
