//! Who the client is behind trusted reverse proxies (`server.trusted_proxies`): the nearest
//! address named in `Forwarded` (RFC 7239) or else `X-Forwarded-For` that is not itself a
//! trusted proxy. Headers from any other peer are ignored, so that a client cannot choose the
//! address it is counted under.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::config::Cidr;

/// The client's address: `peer` itself unless `peer` is a trusted proxy that forwarded the
/// request. Walks the forwarding chain from the nearest hop back; the first address that is
/// not a trusted proxy is the client. A hop the chain cannot name (`unknown`, an obfuscated
/// identifier, garbage) stops the walk at the proxy that reported it.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The addresses of the chain, nearest last: from `Forwarded` when the request has one, else
/// from `X-Forwarded-For`; `None` for a hop that names no address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let joined = |name: &str| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    if let Some(f) = joined("forwarded") {
        return f
            .split(',')
            .map(|element| {
                let f = element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
                })?;
                node_ip(f.trim_matches('"'))
            })
            .collect();
    }
    if let Some(x) = joined("x-forwarded-for") {
        return x.split(',').map(|h| node_ip(h.trim())).collect();
    }
    Vec::new()
}

/// An address as a forwarding header writes it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn node_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        let trusted = vec!["10.0.0.0/8".parse::<Cidr>().unwrap()];
        let xff = h(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            client_ip(proxy, &xff, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(outsider, &xff, &trusted),
            outsider,
            "untrusted peer"
        );
        assert_eq!(client_ip(proxy, &xff, &[]), proxy, "nothing trusted");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted = vec!["10.0.0.0/8".parse::<Cidr>().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A client prepending a made-up address does not escape.
        let m = h(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7")]);
        assert_eq!(client_ip(proxy, &m, &trusted), ip("203.0.113.7"));
        // Two proxies of ours.
        let m = h(&[("x-forwarded-for", "203.0.113.7, 10.1.1.1")]);
        assert_eq!(client_ip(proxy, &m, &trusted), ip("203.0.113.7"));
        // Several header lines are one list.
        let m = h(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(client_ip(proxy, &m, &trusted), ip("203.0.113.7"));
        // Garbage stops at the proxy that wrote it.
        let m = h(&[("x-forwarded-for", "203.0.113.7, nonsense")]);
        assert_eq!(client_ip(proxy, &m, &trusted), proxy);
        // Forwarded wins over X-Forwarded-For, with ports, quotes and IPv6.
        let m = h(&[
            ("x-forwarded-for", "198.51.100.2"),
            ("forwarded", "for=192.0.2.60;proto=https;by=10.0.0.5"),
        ]);
        assert_eq!(client_ip(proxy, &m, &trusted), ip("192.0.2.60"));
        let m = h(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")]);
        assert_eq!(client_ip(proxy, &m, &trusted), ip("2001:db8:cafe::17"));
        let m = h(&[("forwarded", "For=\"192.0.2.43:47011\", for=10.2.2.2")]);
        assert_eq!(client_ip(proxy, &m, &trusted), ip("192.0.2.43"));
        let m = h(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(proxy, &m, &trusted), proxy);
    }
}
