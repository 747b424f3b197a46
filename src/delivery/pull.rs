//! Signed, expiring pull URLs for playout systems: `…/v1/pull/<destination>/<file>/<name>
//! ?exp=<unix seconds>&sig=<hex>`, where `sig` is HMAC-SHA256 (RFC 2104) under the server's
//! secret of the destination, the file, the name and the expiry. Pure: the time is given.

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PullError {
    #[error("this pull URL's signature does not match: it was altered or not issued here")]
    BadSignature,
    #[error("this pull URL expired at {0} (Unix time)")]
    Expired(i64),
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| -> [u8; BLOCK] {
        let mut p = k;
        for b in &mut p {
            *b ^= x;
        }
        p
    };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn message(destination: &str, file_id: i64, name: &str, exp: i64) -> String {
    format!("antenne-pull-v1\n{destination}\n{file_id}\n{name}\n{exp}")
}

/// The signature for these values, as hex.
pub fn sign(secret: &[u8], destination: &str, file_id: i64, name: &str, exp: i64) -> String {
    hmac_sha256(secret, message(destination, file_id, name, exp).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a URL's values are as signed and not expired at `now` (Unix seconds).
pub fn check(
    secret: &[u8],
    destination: &str,
    file_id: i64,
    name: &str,
    exp: i64,
    sig: &str,
    now: i64,
) -> Result<(), PullError> {
    let want = sign(secret, destination, file_id, name, exp);
    // Constant time in the signature's content.
    let same = want.len() == sig.len()
        && want
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(PullError::BadSignature);
    }
    if now >= exp {
        return Err(PullError::Expired(exp));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tampered_or_expired_urls_are_refused() {
        let s = b"0123456789abcdef0123456789abcdef";
        let sig = sign(s, "playout", 7, "a.mxf", 1000);
        assert_eq!(check(s, "playout", 7, "a.mxf", 1000, &sig, 999), Ok(()));
        assert_eq!(
            check(s, "playout", 7, "a.mxf", 1000, &sig, 1000),
            Err(PullError::Expired(1000))
        );
        // A later expiry, another file, another destination: not what was signed.
        assert_eq!(
            check(s, "playout", 7, "a.mxf", 2000, &sig, 999),
            Err(PullError::BadSignature)
        );
        assert_eq!(
            check(s, "playout", 8, "a.mxf", 1000, &sig, 999),
            Err(PullError::BadSignature)
        );
        assert_eq!(
            check(s, "web", 7, "a.mxf", 1000, &sig, 999),
            Err(PullError::BadSignature)
        );
        assert_eq!(
            check(b"another secret", "playout", 7, "a.mxf", 1000, &sig, 999),
            Err(PullError::BadSignature)
        );
    }
}
