//! A small SMTP client (RFC 5321) for notifications: one message to a relay, in plain SMTP on a
//! trusted network or upgraded with STARTTLS (RFC 3207, rustls; the relay's certificate checked
//! against the system's roots or a given CA file), with AUTH PLAIN or LOGIN (RFC 4954) over
//! TLS only. The password is read here, in the sending process, from its file; no message,
//! error or log line carries it. Blocking, with timeouts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("smtp {relay}: {source}")]
    Io {
        relay: String,
        #[source]
        source: std::io::Error,
    },
    #[error("smtp {relay}: after {step} the server answered {reply:?}")]
    Refused {
        relay: String,
        step: &'static str,
        reply: String,
    },
    #[error("smtp: {0:?} is not an address")]
    Address(String),
    /// A setting that cannot work: TLS asked of a relay without STARTTLS, a login without TLS,
    /// an unreadable password or CA file.
    #[error("smtp {relay}: {why}")]
    Setup { relay: String, why: String },
}

impl SmtpError {
    /// Whether another attempt could succeed.
    pub fn retryable(&self) -> bool {
        match self {
            SmtpError::Address(_) | SmtpError::Setup { .. } => false,
            // 5xx: refused for good (bad credentials, rejected recipient).
            SmtpError::Refused { reply, .. } => !reply.starts_with('5'),
            SmtpError::Io { .. } => true,
        }
    }
}

/// A message: plain UTF-8 text.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
}

/// How to reach the relay beyond its address.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Upgrade with STARTTLS before anything else is said (refused when the relay does not
    /// offer it).
    pub starttls: bool,
    /// PEM certificates trusted for the relay instead of the system's roots (a private CA or a
    /// self-signed relay).
    pub ca_file: Option<PathBuf>,
    /// Log in as this user (needs `starttls`).
    pub user: String,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
}

fn address_ok(a: &str) -> bool {
    a.contains('@') && !a.contains(['\r', '\n', '<', '>', ' '])
}

enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Io {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(b),
            Io::Tls(s) => s.read(b),
        }
    }
}

impl Write for Io {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(b),
            Io::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

struct Session<'a> {
    relay: &'a str,
    io: BufReader<Io>,
}

impl Session<'_> {
    fn io_err(&self, source: std::io::Error) -> SmtpError {
        // A certificate the relay's name or the trusted roots do not vouch for will not mend.
        let tls = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        if let Some(e @ rustls::Error::InvalidCertificate(_)) = tls {
            return SmtpError::Setup {
                relay: self.relay.to_string(),
                why: format!("the relay's certificate is refused: {e}"),
            };
        }
        SmtpError::Io {
            relay: self.relay.to_string(),
            source,
        }
    }

    /// Reads a reply (lines `NNN-…` ending with `NNN …`): its lines, checked to start with
    /// `code`.
    fn expect(&mut self, step: &'static str, code: &str) -> Result<Vec<String>, SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.io.read_line(&mut line).map_err(|e| self.io_err(e))?;
            if n == 0 {
                return Err(SmtpError::Refused {
                    relay: self.relay.to_string(),
                    step,
                    reply: "(connection closed)".into(),
                });
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.trim_end().to_string());
            if done {
                break;
            }
        }
        let last = lines.last().cloned().unwrap_or_default();
        if last.starts_with(code) {
            Ok(lines)
        } else {
            Err(SmtpError::Refused {
                relay: self.relay.to_string(),
                step,
                reply: last,
            })
        }
    }

    fn say(&mut self, line: &str) -> Result<(), SmtpError> {
        let w = self.io.get_mut();
        w.write_all(line.as_bytes())
            .and_then(|()| w.flush())
            .map_err(|e| self.io_err(e))
    }

    fn ehlo(&mut self) -> Result<Vec<String>, SmtpError> {
        self.say("EHLO antenne\r\n")?;
        // The extensions, upper-cased, without the code.
        Ok(self
            .expect("EHLO", "250")?
            .iter()
            .skip(1)
            .map(|l| l.get(4..).unwrap_or("").to_ascii_uppercase())
            .collect())
    }
}

fn tls_config(relay: &str, sec: &Security) -> Result<Arc<rustls::ClientConfig>, SmtpError> {
    use rustls::pki_types::pem::PemObject;
    let setup = |why: String| SmtpError::Setup {
        relay: relay.to_string(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &sec.ca_file {
        Some(f) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(f)
                .map_err(|e| setup(format!("CA file {}: {e}", f.display())))?;
            for c in certs {
                let c = c.map_err(|e| setup(format!("CA file {}: {e}", f.display())))?;
                roots
                    .add(c)
                    .map_err(|e| setup(format!("CA file {}: {e}", f.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(setup("no certificate to trust the relay with".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Sends `m` through the relay at `relay` (`host:port`) in plain SMTP.
pub fn send(relay: &str, m: &Mail<'_>) -> Result<(), SmtpError> {
    send_with(relay, &Security::default(), m)
}

/// Sends `m` through the relay at `relay` (`host:port`), secured as `sec` says.
pub fn send_with(relay: &str, sec: &Security, m: &Mail<'_>) -> Result<(), SmtpError> {
    for a in std::iter::once(m.from).chain(m.to.iter().map(String::as_str)) {
        if !address_ok(a) {
            return Err(SmtpError::Address(a.to_string()));
        }
    }
    let setup = |why: String| SmtpError::Setup {
        relay: relay.to_string(),
        why,
    };
    let login = !sec.user.is_empty();
    if login && !sec.starttls {
        return Err(setup(
            "a login is only sent over TLS: set STARTTLS for this relay".into(),
        ));
    }
    let password = match (&sec.password_file, login) {
        (Some(f), true) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| setup(format!("password file {}: {e}", f.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        (None, true) => return Err(setup("a login needs a password file".into())),
        _ => None,
    };
    let io = |source| SmtpError::Io {
        relay: relay.to_string(),
        source,
    };
    let stream = TcpStream::connect(relay).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut s = Session {
        relay,
        io: BufReader::new(Io::Plain(stream)),
    };
    s.expect("connect", "220")?;
    let mut ext = s.ehlo()?;
    if sec.starttls {
        if !ext.iter().any(|e| e == "STARTTLS") {
            return Err(setup(
                "the relay does not offer STARTTLS: nothing was sent".into(),
            ));
        }
        s.say("STARTTLS\r\n")?;
        s.expect("STARTTLS", "220")?;
        let host = relay.rsplit_once(':').map_or(relay, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| setup(format!("{host:?} as a TLS name: {e}")))?;
        let conn = rustls::ClientConnection::new(tls_config(relay, sec)?, name)
            .map_err(|e| setup(format!("TLS: {e}")))?;
        let Io::Plain(tcp) = s.io.into_inner() else {
            return Err(setup("TLS asked twice".into()));
        };
        s = Session {
            relay,
            io: BufReader::new(Io::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))),
        };
        // The handshake happens on the first exchange; the relay's answers before it count
        // for nothing (RFC 3207).
        ext = s.ehlo()?;
    }
    if let Some(pw) = password {
        let mechs: Vec<String> = ext
            .iter()
            .filter_map(|e| e.strip_prefix("AUTH "))
            .flat_map(|m| m.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect();
        let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        if mechs.iter().any(|m| m == "PLAIN") {
            let token = b64(format!("\0{}\0{pw}", sec.user).as_bytes());
            s.say(&format!("AUTH PLAIN {token}\r\n"))?;
            s.expect("AUTH PLAIN", "235")?;
        } else if mechs.iter().any(|m| m == "LOGIN") {
            s.say("AUTH LOGIN\r\n")?;
            s.expect("AUTH LOGIN", "334")?;
            s.say(&format!("{}\r\n", b64(sec.user.as_bytes())))?;
            s.expect("AUTH LOGIN (user)", "334")?;
            s.say(&format!("{}\r\n", b64(pw.as_bytes())))?;
            s.expect("AUTH LOGIN (password)", "235")?;
        } else {
            return Err(setup(format!(
                "the relay offers no login this client speaks (PLAIN, LOGIN): {}",
                if mechs.is_empty() {
                    "none".to_string()
                } else {
                    mechs.join(", ")
                }
            )));
        }
    }
    s.say(&format!("MAIL FROM:<{}>\r\n", m.from))?;
    s.expect("MAIL FROM", "250")?;
    for t in m.to {
        s.say(&format!("RCPT TO:<{t}>\r\n"))?;
        s.expect("RCPT TO", "25")?;
    }
    s.say("DATA\r\n")?;
    s.expect("DATA", "354")?;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let subject: String = m.subject.chars().filter(|c| !c.is_control()).collect();
    let mut data = format!(
        "From: <{}>\r\nTo: {}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        m.from,
        m.to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for line in m.body.lines() {
        // Dot-stuffing: a line starting with "." gets another.
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    s.say(&data)?;
    s.expect("the message", "250")?;
    s.say("QUIT\r\n")?;
    Ok(())
}
