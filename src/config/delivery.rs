//! The `[delivery]` section: delivery destinations (folder, SFTP, S3, pull), the pull endpoint's
//! signing secret, and review notifications (webhooks, e-mail over SMTP). Credentials are never
//! written here: an SFTP destination names a key file or a password file, an S3 destination a
//! file holding its secret access key, read only by the process that connects. Imports nothing
//! of the domain.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Where finished material goes: `[[delivery.destinations]]`.
    pub destinations: Vec<Destination>,
    /// The secret that signs pull URLs (a file of at least 32 bytes); empty: `pull.secret` in
    /// the data directory, made on first use.
    pub pull_secret_file: Option<PathBuf>,
    pub review: Review,
}

/// One destination.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Destination {
    /// Its name in the API (letters, digits, `-` and `_`).
    pub name: String,
    /// `folder`, `sftp`, `s3` or `pull`.
    pub kind: String,
    /// folder: the absolute folder; sftp: the remote folder (absolute, or relative to the
    /// login's home); s3: the key prefix (empty: the bucket's top).
    pub path: String,
    /// s3: `http(s)://host:port` of an S3-compatible store (none: AWS).
    pub endpoint: Option<String>,
    /// s3: the bucket.
    pub bucket: String,
    /// s3: the region (default `us-east-1`).
    pub region: Option<String>,
    /// s3: the access key id.
    pub access_key_id: String,
    /// s3: a file holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// sftp: the server's host name or address.
    pub host: String,
    /// sftp: the server's port (default 22).
    pub port: Option<u16>,
    /// sftp: the login.
    pub user: String,
    /// sftp: a private key file (OpenSSH or PEM format) to log in with.
    pub key_file: Option<PathBuf>,
    /// sftp: a file holding the password (when there is no key).
    pub password_file: Option<PathBuf>,
    /// sftp: the server's host key fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`);
    /// required: a server that shows another key is refused.
    pub host_key_sha256: String,
    /// The name each file gets there: `{house_id}`, `{title}`, `{profile}`, `{name}` (the
    /// stored file's name), `{stem}`, `{ext}`, `{asset_id}`, `{yyyy}`, `{mm}`, `{dd}`.
    /// Default `{house_id}_{profile}.{ext}`.
    pub naming: Option<String>,
    /// The profiles of the renditions it takes; empty: every rendition (never the source).
    pub profiles: Vec<String>,
    /// Sidecar manifests sent with the files: any of `json`, `xml`.
    pub manifests: Vec<String>,
    /// Refuses assets that are not approved (see review and approval).
    pub require_approval: bool,
    /// How a delivered file is checked at the far end: `sha256` (read back and hashed, the
    /// default) or `size`.
    pub verify: Option<String>,
    /// Attempts before a delivery fails for good (default 5; backoff between them).
    pub attempts: Option<u32>,
    /// pull: how long a signed URL stays valid, in seconds (default 86400).
    pub url_ttl_s: Option<u64>,
}

impl Destination {
    pub fn naming(&self) -> &str {
        self.naming
            .as_deref()
            .unwrap_or("{house_id}_{profile}.{ext}")
    }
    pub fn verify_hash(&self) -> bool {
        self.verify.as_deref() != Some("size")
    }
    pub fn url_ttl_s(&self) -> u64 {
        self.url_ttl_s.unwrap_or(86_400)
    }
}

/// Review notifications.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Review {
    /// `http://` URLs POSTed a JSON event on each review change and comment.
    pub webhooks: Vec<String>,
    /// Addresses e-mailed on each review change.
    pub emails: Vec<String>,
    /// The SMTP relay (`host:port`); empty: no e-mail.
    pub smtp: String,
    /// The sender of those e-mails.
    pub mail_from: String,
    /// Upgrade the connection with STARTTLS (the relay's certificate checked); without it,
    /// plain SMTP, for a relay on a trusted network.
    pub smtp_starttls: bool,
    /// PEM certificates to trust for the relay instead of the system's roots.
    pub smtp_ca_file: Option<PathBuf>,
    /// Log in as this user (AUTH PLAIN or LOGIN, over STARTTLS only).
    pub smtp_user: String,
    /// The file holding that user's password (read by the process that sends).
    pub smtp_password_file: Option<PathBuf>,
}

const FIELDS: &[&str] = &[
    "house_id", "title", "profile", "name", "stem", "ext", "asset_id", "yyyy", "mm", "dd",
];

/// Every mistake in the section, as (key, message).
pub fn problems(d: &Delivery) -> Vec<(&'static str, String)> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, x) in d.destinations.iter().enumerate() {
        let at = format!("[[delivery.destinations]] #{} {:?}", i + 1, x.name);
        let mut bad = |key: &'static str, m: String| errs.push((key, format!("{at}: {m}")));
        if x.name.is_empty()
            || x.name.len() > 64
            || !x
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bad(
                "delivery.destinations.name",
                "1-64 letters, digits, - and _".into(),
            );
        }
        if !names.insert(x.name.clone()) {
            bad("delivery.destinations.name", "declared twice".into());
        }
        match x.kind.as_str() {
            "folder" => {
                if !x.path.starts_with('/') {
                    bad(
                        "delivery.destinations.path",
                        "a folder destination needs an absolute path".into(),
                    );
                }
            }
            "sftp" => {
                if x.host.is_empty() || x.user.is_empty() {
                    bad(
                        "delivery.destinations.host",
                        "an sftp destination needs host and user".into(),
                    );
                }
                if x.key_file.is_none() == x.password_file.is_none() {
                    bad(
                        "delivery.destinations.key_file",
                        "an sftp destination needs one of key_file or password_file".into(),
                    );
                }
                if !x.host_key_sha256.starts_with("SHA256:") {
                    bad(
                        "delivery.destinations.host_key_sha256",
                        "required for sftp: the server's key fingerprint, SHA256:… as \
                         `ssh-keygen -lf` prints it"
                            .into(),
                    );
                }
            }
            "s3" => {
                if x.bucket.is_empty() {
                    bad(
                        "delivery.destinations.bucket",
                        "an s3 destination needs a bucket".into(),
                    );
                }
                if x.access_key_id.is_empty() != x.secret_access_key_file.is_none() {
                    bad(
                        "delivery.destinations.secret_access_key_file",
                        "an s3 destination needs both access_key_id and secret_access_key_file \
                         (or neither, for a public bucket)"
                            .into(),
                    );
                }
                if x.endpoint
                    .as_deref()
                    .is_some_and(|e| !(e.starts_with("http://") || e.starts_with("https://")))
                {
                    bad(
                        "delivery.destinations.endpoint",
                        "an http:// or https:// URL".into(),
                    );
                }
                if x.path.starts_with('/') || x.path.contains("//") {
                    bad(
                        "delivery.destinations.path",
                        "an s3 key prefix: no leading / and no empty part".into(),
                    );
                }
            }
            "pull" => {}
            k => bad(
                "delivery.destinations.kind",
                format!("{k:?} is not folder, sftp, s3 or pull"),
            ),
        }
        if let Err(e) = check_template(x.naming()) {
            bad("delivery.destinations.naming", e);
        }
        for m in &x.manifests {
            if m != "json" && m != "xml" {
                bad(
                    "delivery.destinations.manifests",
                    format!("{m:?} is not json or xml"),
                );
            }
        }
        if let Some(v) = &x.verify {
            if v != "size" && v != "sha256" {
                bad(
                    "delivery.destinations.verify",
                    format!("{v:?} is not size or sha256"),
                );
            }
        }
        if x.attempts.is_some_and(|a| !(1..=100).contains(&a)) {
            bad("delivery.destinations.attempts", "1-100".into());
        }
        if x.url_ttl_s.is_some_and(|t| !(1..=31 * 86_400).contains(&t)) {
            bad(
                "delivery.destinations.url_ttl_s",
                "1-2678400 seconds".into(),
            );
        }
    }
    for w in &d.review.webhooks {
        if !w.starts_with("http://") {
            errs.push((
                "delivery.review.webhooks",
                format!("{w:?}: only http:// webhooks"),
            ));
        }
    }
    if !d.review.smtp.is_empty() {
        let ok = d
            .review
            .smtp
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            errs.push((
                "delivery.review.smtp",
                format!("{:?} is not host:port", d.review.smtp),
            ));
        }
        if !d.review.smtp_user.is_empty()
            && (!d.review.smtp_starttls || d.review.smtp_password_file.is_none())
        {
            errs.push((
                "delivery.review.smtp_user",
                "a login needs smtp_starttls = true (it is never sent in the clear) and \
                 smtp_password_file"
                    .into(),
            ));
        }
        if !d.review.mail_from.contains('@') {
            errs.push((
                "delivery.review.mail_from",
                "an e-mail address is needed with smtp".into(),
            ));
        }
    }
    for e in &d.review.emails {
        if !e.contains('@') || e.contains(['\r', '\n', '<', '>']) {
            errs.push(("delivery.review.emails", format!("{e:?} is not an address")));
        }
    }
    errs
}

/// A naming template's fields are known and its braces balanced.
pub fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        if rest.as_bytes()[i] == b'}' {
            return Err(format!("{t:?}: a closing }} without an opening {{"));
        }
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("{t:?}: an opening {{ without a closing }}"))?;
        let f = &after[..j];
        if !FIELDS.contains(&f) {
            return Err(format!(
                "{t:?}: no field {{{f}}} (known: {})",
                FIELDS.join(", ")
            ));
        }
        rest = &after[j + 1..];
    }
    if t.contains('/') || t.trim().is_empty() {
        return Err(format!("{t:?}: a file name, without /"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_destinations_are_checked() {
        assert!(check_template("{house_id}_{profile}.{ext}").is_ok());
        assert!(check_template("{nope}.mxf").unwrap_err().contains("{nope}"));
        assert!(check_template("a/{name}").is_err());
        assert!(check_template("{name").is_err());
        let d = Delivery {
            destinations: vec![Destination {
                name: "x y".into(),
                kind: "sftp".into(),
                ..Destination::default()
            }],
            ..Delivery::default()
        };
        let keys: Vec<&str> = problems(&d).iter().map(|e| e.0).collect();
        assert!(keys.contains(&"delivery.destinations.name"));
        assert!(keys.contains(&"delivery.destinations.host"));
        assert!(keys.contains(&"delivery.destinations.key_file"));
        assert!(keys.contains(&"delivery.destinations.host_key_sha256"));
        let d = Delivery {
            destinations: vec![Destination {
                name: "bucket".into(),
                kind: "s3".into(),
                path: "/abs".into(),
                endpoint: Some("ftp://x".into()),
                access_key_id: "AKIA".into(),
                ..Destination::default()
            }],
            review: Review {
                smtp: "relay:587".into(),
                mail_from: "a@example.org".into(),
                smtp_user: "antenne".into(),
                ..Review::default()
            },
            ..Delivery::default()
        };
        let keys: Vec<&str> = problems(&d).iter().map(|e| e.0).collect();
        for k in [
            "delivery.destinations.bucket",
            "delivery.destinations.secret_access_key_file",
            "delivery.destinations.endpoint",
            "delivery.destinations.path",
            "delivery.review.smtp_user",
        ] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
    }
}
