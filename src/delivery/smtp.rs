//! A small SMTP client (RFC 5321) for notifications: one message to a relay on a trusted
//! network, plain SMTP without authentication or TLS. Blocking, with timeouts.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

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
}

/// A message: plain UTF-8 text.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
}

fn address_ok(a: &str) -> bool {
    a.contains('@') && !a.contains(['\r', '\n', '<', '>', ' '])
}

/// Sends `m` through the relay at `relay` (`host:port`).
pub fn send(relay: &str, m: &Mail<'_>) -> Result<(), SmtpError> {
    for a in std::iter::once(m.from).chain(m.to.iter().map(String::as_str)) {
        if !address_ok(a) {
            return Err(SmtpError::Address(a.to_string()));
        }
    }
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
    let mut w = stream.try_clone().map_err(io)?;
    let mut r = BufReader::new(stream);
    let expect = |r: &mut BufReader<TcpStream>, step: &'static str, code: &str| {
        // A reply is lines `NNN-…` ending with `NNN …`.
        let mut last;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(io)? == 0 {
                return Err(SmtpError::Refused {
                    relay: relay.to_string(),
                    step,
                    reply: "(connection closed)".into(),
                });
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            last = line.trim_end().to_string();
            if done {
                break;
            }
        }
        if last.starts_with(code) {
            Ok(())
        } else {
            Err(SmtpError::Refused {
                relay: relay.to_string(),
                step,
                reply: last,
            })
        }
    };
    let say = |w: &mut TcpStream, line: &str| w.write_all(line.as_bytes()).map_err(io);
    expect(&mut r, "connect", "220")?;
    say(&mut w, "EHLO antenne\r\n")?;
    expect(&mut r, "EHLO", "250")?;
    say(&mut w, &format!("MAIL FROM:<{}>\r\n", m.from))?;
    expect(&mut r, "MAIL FROM", "250")?;
    for t in m.to {
        say(&mut w, &format!("RCPT TO:<{t}>\r\n"))?;
        expect(&mut r, "RCPT TO", "25")?;
    }
    say(&mut w, "DATA\r\n")?;
    expect(&mut r, "DATA", "354")?;
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
    say(&mut w, &data)?;
    expect(&mut r, "the message", "250")?;
    say(&mut w, "QUIT\r\n")?;
    let _ = w.flush();
    Ok(())
}
