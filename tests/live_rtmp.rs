//! RTMP in and out and HLS pull against the real service, with ffmpeg as publisher, receiver and
//! HLS origin: two publishers on one port routed by key, a wrong key refused and counted while the
//! real feeds go on, garbage at the port, a push to an ffmpeg RTMP server that starts late, and an
//! HLS playlist followed from before it exists to its end.

mod common;

use common::live::{create, free_tcp_port, stats, wait_for, Proc, Receiver};

use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::Server;
use serde_json::json;

/// ffmpeg sending a generated H.264 + AAC clip of `size` at real-time pace.
fn send(seconds: u32, size: &str, muxer: &str, extra: &[&str], url: &str) -> Proc {
    let c = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:duration={seconds}:sample_rate=48000"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .args(extra)
        .args(["-f", muxer])
        .arg(url)
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed");
    Proc(c)
}

/// (video frames decoded, width, height) of a file, by ffprobe.
fn decoded(path: &Path) -> (u64, u64, u64) {
    let p = common::ffprobe(path, true);
    let v = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("no video in {}: {p}", path.display()))
        .clone();
    let frames = v["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (
        frames,
        v["width"].as_u64().unwrap_or(0),
        v["height"].as_u64().unwrap_or(0),
    )
}

fn continuity_errors(path: &Path) -> bool {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "debug",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stderr).contains("Continuity check failed")
}

#[test]
fn rtmp_publishers_routed_by_key_wrong_key_and_garbage_refused() {
    let s = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let (r1, r2) = (Receiver::start(), Receiver::start());
    let a = create(
        &s,
        "sources",
        json!({"name": "obs-a", "kind": "rtmp", "address": addr, "key": "alpha-key-1"}),
    );
    let b = create(
        &s,
        "sources",
        json!({"name": "obs-b", "kind": "rtmp", "address": addr, "key": "bravo-key-2"}),
    );
    let mut outs = Vec::new();
    for (src, r) in [(a, &r1), (b, &r2)] {
        outs.push(create(
            &s,
            "outputs",
            json!({"name": format!("out-{src}"), "kind": "udp", "source_id": src,
                   "address": format!("127.0.0.1:{}", r.port)}),
        ));
    }
    // The key is a secret: GET masks it.
    let g = s.call(
        "GET",
        &format!("/v1/live/sources/{a}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(g.body["settings"]["key"], "********", "{}", g.body);
    // The same key twice on one port is refused.
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "dup", "kind": "rtmp", "address": addr, "key": "alpha-key-1"})),
    );
    assert!(r.status >= 400 && r.status < 500, "{} {}", r.status, r.body);

    // Settings checked up front: a URL that is not http(s), a key needs its listening address.
    for (body, field) in [
        (
            json!({"name": "h", "kind": "hls_pull", "url": "ftp://cdn/live.m3u8"}),
            "url",
        ),
        (
            json!({"name": "k", "kind": "rtmp", "key": "abc"}),
            "address",
        ),
        (
            json!({"name": "o", "kind": "rtmp", "address": addr, "key": "a/b"}),
            "key",
        ),
    ] {
        let r = s.call("POST", "/v1/live/sources", Some(&s.admin), Some(&body));
        assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(m.starts_with(field), "{m}");
    }
    let doc = s.call("GET", "/openapi.json", None, None).body;
    let props = &doc["components"]["schemas"]["LiveSource"]["properties"];
    for f in ["key", "url", "variant", "max_bandwidth", "ca_file"] {
        assert!(props[f].is_object(), "LiveSource.{f} documented: {props}");
    }
    let text = common::stdout(&common::run(common::antenne().arg("doctor")));
    for kind in ["source rtmp ", "source hls_pull ", "output rtmp "] {
        let line = text
            .lines()
            .find(|l| l.starts_with("live") && l.contains(kind))
            .unwrap_or_else(|| panic!("doctor lists {kind}: {text}"));
        assert!(line.ends_with("available"), "{line}");
    }

    let pa = send(
        6,
        "320x180",
        "flv",
        &[],
        &format!("rtmp://{addr}/live/alpha-key-1"),
    );
    let pb = send(
        6,
        "256x144",
        "flv",
        &[],
        &format!("rtmp://{addr}/live/bravo-key-2"),
    );
    // Garbage at the port while the feeds run: random bytes, a cut handshake, a version-3
    // handshake followed by noise.
    let garbage = std::thread::spawn(move || {
        let mut seed = 0x2545F4914F6CDD1Du64;
        for i in 0..60 {
            let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let mut b: Vec<u8> = (0..(1 + i * 97 % 4000))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            match i % 3 {
                0 => b[0] = 3,
                1 => b.truncate(700),
                _ => {}
            }
            let _ = c.write_all(&b);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut wrong = send(
        2,
        "320x180",
        "flv",
        &[],
        &format!("rtmp://{addr}/live/not-the-key"),
    );
    let st = wait_for(Duration::from_secs(20), "wrong key refused", || {
        wrong.0.try_wait().unwrap()
    });
    assert!(
        !st.success(),
        "a publisher with a wrong key must be refused"
    );
    garbage.join().unwrap();
    for mut p in [pa, pb] {
        wait_for(Duration::from_secs(30), "publisher done", || {
            p.0.try_wait().unwrap()
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let sa = stats(&s, "sources", a);
    assert!(sa["link"]["refused"].as_u64().unwrap() >= 1, "{sa}");
    assert!(sa["link"]["bytes"].as_u64().unwrap() > 10_000, "{sa}");
    let log = sa["link"]["last_error"].as_str().unwrap_or_default();
    assert!(
        log.contains("wrong stream key") || log.contains("publisher"),
        "{sa}"
    );
    for (r, w, h, name, out) in [
        (&r1, 320, 180, "a.ts", outs[0]),
        (&r2, 256, 144, "b.ts", outs[1]),
    ] {
        assert!(r.len() > 10_000, "{name}: {} bytes", r.len());
        let f = work.path().join(name);
        r.save(&f);
        let (frames, fw, fh) = decoded(&f);
        assert_eq!((fw, fh), (w, h), "{name}: routed to the wrong source?");
        assert!(frames >= 100, "{name}: {frames} frames of 150");
        assert!(
            !continuity_errors(&f),
            "{name}: continuity errors; output {}",
            stats(&s, "outputs", out)
        );
    }
}

#[test]
fn rtmp_push_reaches_a_server_that_starts_late() {
    let s = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let in_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let src = create(
        &s,
        "sources",
        json!({"name": "feed", "kind": "udp", "address": format!("127.0.0.1:{in_port}")}),
    );
    let rtmp_port = free_tcp_port();
    let out = create(
        &s,
        "outputs",
        json!({"name": "to-cdn", "kind": "rtmp", "source_id": src,
               "url": format!("rtmp://127.0.0.1:{rtmp_port}/live"), "key": "x"}),
    );
    let g = s.call(
        "GET",
        &format!("/v1/live/outputs/{out}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(g.body["settings"]["key"], "********", "{}", g.body);
    let _feed = send(
        12,
        "320x180",
        "mpegts",
        &[],
        &format!("udp://127.0.0.1:{in_port}?pkt_size=1316"),
    );
    // Nothing listens yet: the push fails and is retried.
    wait_for(Duration::from_secs(15), "the failed push reported", || {
        stats(&s, "outputs", out)["link"]["last_error"]
            .as_str()
            .map(str::to_string)
    });
    let file = work.path().join("got.flv");
    let mut recv = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-listen", "1", "-i"])
            .arg(format!("rtmp://127.0.0.1:{rtmp_port}/live/x"))
            .args(["-t", "3", "-c", "copy", "-f", "flv"])
            .arg(&file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let st = wait_for(Duration::from_secs(30), "the receiver done", || {
        recv.0.try_wait().unwrap()
    });
    assert!(st.success(), "the RTMP receiver failed");
    let (frames, w, h) = decoded(&file);
    assert_eq!((w, h), (320, 180));
    assert!(frames >= 50, "{frames} frames received over RTMP");
    let o = stats(&s, "outputs", out);
    assert!(o["link"]["bytes"].as_u64().unwrap() > 10_000, "{o}");
}

/// A static file server for the HLS origin's folder, on its own thread; `down` makes it answer
/// 404 to everything (an upstream outage).
fn http_server(dir: &Path, down: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let dir = dir.clone();
            let down = down.clone();
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader};
                let mut line = String::new();
                let mut r = BufReader::new(c.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let name = path.trim_start_matches('/');
                let body = (!down.load(Ordering::Relaxed) && !name.contains(".."))
                    .then(|| std::fs::read(dir.join(name)).ok())
                    .flatten();
                let _ = match body {
                    Some(b) => c
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| c.write_all(&b)),
                    None => c.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            });
        }
    });
    port
}

#[test]
fn hls_pull_follows_a_live_playlist_through_an_outage() {
    hls_pull(&[], true);
}

#[test]
fn hls_pull_remuxes_fmp4_segments() {
    hls_pull(&["-hls_segment_type", "fmp4"], false);
}

/// Pulls a live HLS made by ffmpeg (`extra`: its segment options) from before it exists to its
/// end, through a 1.5 s outage of the origin when `outage`.
fn hls_pull(extra: &[&str], outage: bool) {
    let s = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let origin = work.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let port = http_server(&origin, down.clone());
    let rx = Receiver::start();
    // The source starts before the playlist exists: 404s, retried with a back-off.
    let src = create(
        &s,
        "sources",
        json!({"name": "upstream", "kind": "hls_pull",
               "url": format!("http://127.0.0.1:{port}/live.m3u8")}),
    );
    create(
        &s,
        "outputs",
        json!({"name": "out", "kind": "udp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    wait_for(Duration::from_secs(10), "the 404 reported", || {
        stats(&s, "sources", src)["link"]["last_error"]
            .as_str()
            .filter(|e| e.contains("404"))
            .map(str::to_string)
    });
    let mut origin_ff = send(
        14,
        "320x180",
        "hls",
        &[
            extra,
            &[
                "-hls_time",
                "1",
                "-hls_list_size",
                "4",
                "-hls_flags",
                "delete_segments+temp_file",
            ],
        ]
        .concat(),
        &origin.join("live.m3u8").to_string_lossy(),
    );
    wait_for(Duration::from_secs(15), "live from HLS", || {
        (stats(&s, "sources", src)["state"] == "live").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    // An outage of the origin (every request 404) for 1.5 s: the pull survives it.
    if outage {
        down.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1500));
        down.store(false, Ordering::Relaxed);
    }
    wait_for(Duration::from_secs(30), "the origin done", || {
        origin_ff.0.try_wait().unwrap()
    });
    std::thread::sleep(Duration::from_secs(2));
    let st = stats(&s, "sources", src);
    let fetched = st["link"]["segments_fetched"].as_u64().unwrap_or(0);
    assert!(fetched >= 6, "{st}");
    let f = work.path().join("got.ts");
    rx.save(&f);
    let (frames, w, h) = decoded(&f);
    assert_eq!((w, h), (320, 180));
    assert!(frames >= 150, "{frames} frames of ~350 ({st})");
    assert!(!continuity_errors(&f), "continuity errors in the pulled TS");
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it, made by openssl
/// in `dir`: (ca.pem, server.pem, server.key).
fn make_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=antenne test CA"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// Python's static file server over TLS (`cert`, `key`) for `dir`; returns it and its port.
fn https_server(dir: &Path, cert: &Path, key: &Path) -> (Proc, u16) {
    let mut c = Command::new("python3")
        .args([
            "-c",
            "import functools, http.server, ssl, sys\n\
             h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
             s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
             c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
             c.load_cert_chain(sys.argv[2], sys.argv[3])\n\
             s.socket = c.wrap_socket(s.socket, server_side=True)\n\
             print(s.server_address[1], flush=True)\n\
             s.serve_forever()\n",
        ])
        .arg(dir)
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is installed");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line.trim().parse().expect("the https server's port");
    (Proc(c), port)
}

/// An HLS origin over https with a certificate from the test's own CA: pulled when the source
/// names the CA file; refused with the reason on the source's state when it does not, or when the
/// certificate is not for the host asked; a CA file that is no PEM is refused when the source is
/// made.
#[test]
fn hls_pull_over_https_trusts_its_ca_file_and_refuses_bad_certificates() {
    let work = tempfile::tempdir().unwrap();
    let s = Server::start(&[(
        "ANTENNE_INGEST_ROOTS",
        format!("[\"{}\"]", work.path().display()),
    )]);
    let origin = work.path().join("origin");
    std::fs::create_dir(&origin).unwrap();
    let (ca, cert, key) = make_certificates(work.path());
    let (_server, port) = https_server(&origin, &cert, &key);
    let url = format!("https://127.0.0.1:{port}/live.m3u8");

    for (body, field) in [
        (
            json!({"name": "x", "kind": "hls_pull", "url": url, "ca_file": work.path().join("none.pem")}),
            "ca_file",
        ),
        (
            json!({"name": "x", "kind": "hls_pull", "url": url, "ca_file": key}),
            "ca_file",
        ),
        // Over the API, a CA file outside the ingest roots is not read.
        (
            json!({"name": "x", "kind": "hls_pull", "url": url, "ca_file": "/etc/ssl/certs/ca-certificates.crt"}),
            "ca_file",
        ),
        (
            json!({"name": "x", "kind": "hls_pull", "url": format!("http://127.0.0.1:{port}/a.m3u8"), "ca_file": ca}),
            "ca_file",
        ),
    ] {
        let r = s.call("POST", "/v1/live/sources", Some(&s.admin), Some(&body));
        assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(m.starts_with(field), "{m}");
    }

    let mut origin_ff = send(
        8,
        "320x180",
        "hls",
        &[
            "-hls_time",
            "1",
            "-hls_list_size",
            "4",
            "-hls_flags",
            "delete_segments+temp_file",
        ],
        &origin.join("live.m3u8").to_string_lossy(),
    );
    let rx = Receiver::start();
    let trusted = create(
        &s,
        "sources",
        json!({"name": "trusted", "kind": "hls_pull", "url": url, "ca_file": ca}),
    );
    create(
        &s,
        "outputs",
        json!({"name": "out", "kind": "udp", "source_id": trusted,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    let untrusted = create(
        &s,
        "sources",
        json!({"name": "untrusted", "kind": "hls_pull", "url": url}),
    );
    let wrong_name = create(
        &s,
        "sources",
        json!({"name": "wrong name", "kind": "hls_pull", "ca_file": ca,
               "url": format!("https://localhost:{port}/live.m3u8")}),
    );
    for (id, why) in [
        (
            untrusted,
            "TLS: the server's certificate is not signed by a trusted CA",
        ),
        (
            wrong_name,
            "TLS: the server's certificate is not valid for this host name",
        ),
    ] {
        let e = wait_for(Duration::from_secs(15), why, || {
            stats(&s, "sources", id)["link"]["last_error"]
                .as_str()
                .filter(|e| !e.contains("404"))
                .map(str::to_string)
        });
        assert!(e.contains(why), "{e}");
    }
    wait_for(Duration::from_secs(15), "live over https", || {
        (stats(&s, "sources", trusted)["state"] == "live").then_some(())
    });
    wait_for(Duration::from_secs(30), "the origin done", || {
        origin_ff.0.try_wait().unwrap()
    });
    std::thread::sleep(Duration::from_secs(2));
    for id in [untrusted, wrong_name] {
        let st = stats(&s, "sources", id);
        assert_ne!(st["state"], "live", "{st}");
        assert_eq!(
            st["link"]["segments_fetched"].as_u64().unwrap_or(0),
            0,
            "{st}"
        );
    }
    let st = stats(&s, "sources", trusted);
    assert!(
        st["link"]["segments_fetched"].as_u64().unwrap_or(0) >= 4,
        "{st}"
    );
    let f = work.path().join("got.ts");
    rx.save(&f);
    let (frames, w, h) = decoded(&f);
    assert_eq!((w, h), (320, 180));
    assert!(frames >= 75, "{frames} frames of ~200 over https ({st})");
}
