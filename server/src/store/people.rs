//! Who may do what: tokens (by hash), users, and the audit log of every change. Kept apart from
//! the apps' records; `auth.rs` is their only reader besides the handlers that manage them.

use super::*;

impl Store {
    // --- tokens ---------------------------------------------------------------------------

    pub fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.inner
            .tokens
            .get(hash)?
            .map(|v| decode("tokens", &v))
            .transpose()
    }

    pub fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()> {
        self.inner.tokens.insert(hash, encode(rec))
    }

    pub fn delete_tokens_where(&self, pred: impl Fn(&TokenRecord) -> bool) -> Result<()> {
        for (k, v) in self.inner.tokens.all()? {
            if pred(&decode("tokens", &v)?) {
                self.inner.tokens.remove(k)?;
            }
        }
        Ok(())
    }

    /// Every token with its hash.
    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        self.inner
            .tokens
            .all()?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("tokens", &v)?,
                ))
            })
            .collect()
    }

    pub fn delete_token(&self, hash: &str) -> Result<()> {
        self.inner.tokens.remove(hash)?;
        Ok(())
    }

    /// Before users: the admin token(s) become the first admin user's, `admin`. Idempotent; run
    /// at every start.
    pub fn migrate_to_users(&self) -> Result<()> {
        for (hash, mut rec) in self.tokens()? {
            if rec.role == Role::Admin {
                if self.user("admin")?.is_none() {
                    self.put_user(&UserRecord {
                        name: "admin".into(),
                        admin: true,
                        created_at: rec.created_at,
                    })?;
                }
                rec.role = Role::User {
                    name: "admin".into(),
                };
                if rec.id.is_empty() {
                    rec.id = crate::auth::short_id();
                }
                self.put_token(&hash, &rec)?;
            }
        }
        Ok(())
    }

    // --- users ----------------------------------------------------------------------------

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.inner
            .users
            .values()?
            .iter()
            .map(|v| decode("users", v))
            .collect()
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.inner
            .users
            .get(name)?
            .map(|v| decode("users", &v))
            .transpose()
    }

    pub fn put_user(&self, rec: &UserRecord) -> Result<()> {
        self.inner.users.insert(&rec.name, encode(rec))
    }

    /// Adds a user; `Exists` when the name is taken.
    pub fn create_user(&self, rec: &UserRecord) -> Result<()> {
        match self.inner.users.cas(&rec.name, None, Some(&encode(rec)))? {
            true => Ok(()),
            false => Err(StoreError::Exists),
        }
    }

    /// Removes a user, its tokens, and its access to every app.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        if !self.inner.users.remove(name)? {
            return Err(StoreError::NotFound);
        }
        let role = Role::User {
            name: name.to_string(),
        };
        self.delete_tokens_where(|t| t.role == role)?;
        for app in self.apps()? {
            if app.access.contains(name) {
                match self.update_app::<std::convert::Infallible>(&app.name, |a| {
                    a.access.remove(name);
                    Ok(())
                }) {
                    Ok(_) | Err(UpdateError::Store(StoreError::NotFound)) => {}
                    Err(UpdateError::Store(e)) => return Err(e),
                    Err(UpdateError::Rejected(never)) => match never {},
                }
            }
        }
        Ok(())
    }

    // --- audit ----------------------------------------------------------------------------

    /// Appends a change to the audit log, which keeps the newest [`AUDIT_KEEP`] entries.
    pub fn audit(&self, rec: &AuditRecord) -> Result<()> {
        // Keys sort by time: milliseconds, then a sequence number against collisions.
        let seq = self.unique_id()?;
        let mut key = rec.at.millis().to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        self.inner.audit.insert(key, encode(rec))?;
        while self.inner.audit.len()? > AUDIT_KEEP {
            if !self.inner.audit.pop_min()? {
                break;
            }
        }
        Ok(())
    }

    /// The newest `limit` entries (of one app, when given), newest first.
    pub fn audit_log(&self, app: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        let mut before = None;
        // Newest first, a page at a time: most asks are answered by the first page.
        loop {
            let page = self.inner.audit.scan_rev(before.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            before = Some(last.clone());
            for (_, v) in &page {
                let rec: AuditRecord = decode("audit", v)?;
                if app.is_none_or(|a| rec.app.as_deref() == Some(a)) {
                    out.push(rec);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
    }
}
