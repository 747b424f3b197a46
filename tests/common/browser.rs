//! Headless Chromium driven over the W3C WebDriver protocol: `chromedriver` started on a free
//! loopback port, a small JSON client over it (sessions, navigation, elements, scripts,
//! screenshots).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
    pub shots: PathBuf,
}

/// A WebDriver error answer: its `error` code and message.
#[derive(Debug)]
pub struct WdError(pub String, pub String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and one headless Chromium window of `w`×`h`.
    pub fn start(w: u32, h: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/chromedriver (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = ureq::get(&format!("{base}/status")).call() {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < until,
                "chromedriver did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={w},{h}"),
                    "--autoplay-policy=no-user-gesture-required",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r = ureq::post(&format!("{base}/session"))
            .timeout(Duration::from_secs(60))
            .send_json(caps);
        let v: Value = match r {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(_, r)) => panic!("new session: {}", r.into_string().unwrap()),
            Err(e) => panic!("new session: {e}"),
        };
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/panel-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let b = Browser {
            driver,
            base,
            session,
            _profile: profile,
            shots,
        };
        // The viewport itself, whatever the window decorations take.
        b.set_viewport(w, h);
        b
    }

    fn set_viewport(&self, w: u32, h: u32) {
        let inner = self.eval("return [window.innerWidth, window.innerHeight]", &[]);
        let (iw, ih) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
        let rect = self.cmd("GET", "/window/rect", None).unwrap();
        let (ow, oh) = (
            rect["width"].as_u64().unwrap(),
            rect["height"].as_u64().unwrap(),
        );
        let _ = self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": u64::from(w) + ow - iw, "height": u64::from(h) + oh - ih})),
        );
    }

    /// A session command: `path` after `/session/{id}`.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let r = match body {
            Some(b) => req.send_json(b),
            None if method == "POST" => req.send_json(json!({})),
            None => req.call(),
        };
        let v: Value = match r {
            Ok(r) => r.into_json().unwrap_or(Value::Null),
            Err(ureq::Error::Status(_, r)) => r.into_json().unwrap_or(Value::Null),
            Err(e) => return Err(WdError("transport".into(), e.to_string())),
        };
        match v["value"]["error"].as_str() {
            Some(e) => Err(WdError(
                e.to_string(),
                v["value"]["message"].as_str().unwrap_or("").to_string(),
            )),
            None => Ok(v["value"].clone()),
        }
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .unwrap();
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn eval(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .unwrap_or_else(|e| panic!("script failed: {e:?}\n{script}"))
    }

    /// Runs an async script: it ends by calling `arguments[arguments.length - 1](value)`.
    pub fn eval_async(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .unwrap_or_else(|e| panic!("async script failed: {e:?}\n{script}"))
    }

    pub fn find(&self, css: &str) -> Option<String> {
        self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    /// Waits up to `secs` for an element to exist and returns it.
    pub fn wait(&self, css: &str, secs: u64) -> String {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if Instant::now() > until {
                self.screenshot(&format!("timeout-{}", sanitize(css)));
                panic!(
                    "no element {css:?} within {secs} s; page text:\n{}",
                    self.text("body")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `secs` for `cond` (a script returning a boolean) to hold.
    pub fn wait_for(&self, what: &str, cond: &str, secs: u64) {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.eval(cond, &[]) == Value::Bool(true) {
                return;
            }
            if Instant::now() > until {
                self.screenshot(&format!("timeout-{}", sanitize(what)));
                panic!(
                    "{what}: not within {secs} s; page text:\n{}",
                    self.text("body")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element; found again when the page redrew it between finding and clicking
    /// (live pages replace their rows as the change feed tells them).
    pub fn click(&self, css: &str) {
        for _ in 0..5 {
            let e = self.wait(css, 10);
            match self.cmd("POST", &format!("/element/{e}/click"), Some(json!({}))) {
                Ok(_) => return,
                Err(WdError(code, _)) if code == "stale element reference" => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(err) => panic!("click {css}: {err:?}"),
            }
        }
        panic!("click {css}: the element kept being replaced");
    }

    /// Types into an element (after clearing it).
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css, 10);
        let _ = self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|err| panic!("type into {css}: {err:?}"));
    }

    /// Key presses sent to the focused element (WebDriver key codes, e.g. "\u{E007}" Enter).
    pub fn keys(&self, css: &str, text: &str) {
        let e = self.wait(css, 10);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .unwrap();
    }

    /// The rendered text of the first element matching `css` ("" when none).
    pub fn text(&self, css: &str) -> String {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            &[json!(css)],
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    pub fn count(&self, css: &str) -> usize {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length",
            &[json!(css)],
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// Writes `target/panel-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let p = self.shots.join(format!("{name}.png"));
        if let Ok(v) = self.cmd("GET", "/screenshot", None) {
            if let Some(b) = v.as_str() {
                if let Ok(png) = base64::engine::general_purpose::STANDARD.decode(b) {
                    let _ = std::fs::write(&p, png);
                }
            }
        }
        p
    }

    pub fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", None).unwrap();
    }

    pub fn cookies(&self) -> Value {
        self.cmd("GET", "/cookie", None).unwrap()
    }

    /// What the page printed to its console (each entry's level and message).
    pub fn console(&self) -> Vec<(String, String)> {
        // The legacy log endpoint chromedriver keeps beside the W3C commands.
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Gives a file input a file from disk, as a person choosing it would.
    pub fn choose_file(&self, css: &str, file: &Path) {
        let e = self.wait(css, 10);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": file.display().to_string() })),
        )
        .unwrap_or_else(|err| panic!("choose file: {err:?}"));
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session))
            .timeout(Duration::from_secs(10))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
