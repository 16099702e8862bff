//! The web page and HTTP API against the real server: `pvtherm serve` (and
//! the daemon with `[http]`) on a free loopback port, the real models, real
//! survey images, a real headless Chromium for the page.

#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pv/images");

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// A plain HTTP/1.1 request (`Connection: close`), enough for these tests.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let raw = exchange(addr, method, path, headers, body).expect("server accepts connections");
    parse_answer(&raw)
}

/// As [`request`], but `None` when the server is gone or closes the
/// connection without an answer (a daemon stopping at the end of its replay).
fn request_unless_stopping(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Answer> {
    let raw = exchange(addr, method, path, headers, body).ok()?;
    (!raw.is_empty()).then(|| parse_answer(&raw))
}

/// Sends one request and reads the raw answer until the server closes.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading everything.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    Ok(raw)
}

/// Status, headers and body (plain or chunked) of a raw HTTP answer.
fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 4 + size..];
        }
        body = out;
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// A `multipart/form-data` body of files, and its content type.
fn multipart(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let boundary = "pvtherm-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

/// `pvtherm serve` on a free port, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(config: Option<&Path>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvtherm"));
        // The pair `detect` uses (`auto` could pick int8 on this box), so an
        // upload and `detect` on the same image must agree.
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--precision", "f32"]);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("pvtherm serve: listening on http://")
            .and_then(|s| s.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    /// Still answering, and still with its models.
    fn assert_healthy(&self, headers: &[(&str, &str)]) {
        let status = request(self.addr, "GET", "/api/v1/status", headers, b"");
        assert_eq!(status.status, 200, "{}", status.text());
        assert_eq!(status.json()["mode"], "serve");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pvtherm detect --json` on `files`.
fn detect_json(files: &[PathBuf], config: Option<&Path>) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvtherm"));
    cmd.args(["detect", "--json"]).args(files);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (module count, defective indexes, anomaly classes) of each image.
fn modules_of(report: &Value) -> Vec<(u64, Vec<u64>, Vec<String>)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let modules = i["modules"].as_array().unwrap();
            (
                i["module_count"].as_u64().unwrap(),
                modules
                    .iter()
                    .filter(|m| m["defective"] == true)
                    .map(|m| m["index"].as_u64().unwrap())
                    .collect(),
                modules
                    .iter()
                    .map(|m| m["anomaly_class"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// A config with a fixed position (so the geographic exports have places)
/// and the given `[http]` lines.
fn write_config(dir: &Path, http: &str) -> PathBuf {
    let path = dir.join("pvtherm.toml");
    std::fs::write(
        &path,
        format!(
            "[analysis.tracking]\nmin_frames = 1\n[analysis.position]\nsource = \"fixed\"\nlatitude = 47.5\nlongitude = 8.25\n[http]\n{http}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn upload_gives_what_detect_gives_and_the_exports_match_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = Server::start(Some(&config));
    let names = ["20180630_154039.jpg", "20180630_154531.jpg"];
    let paths: Vec<PathBuf> = names.iter().map(|n| Path::new(FIXTURES).join(n)).collect();
    let expected = detect_json(&paths, Some(&config));

    // One image as the raw body.
    let one = request(
        server.addr,
        "POST",
        &format!("/api/v1/detect?name={}", names[0]),
        &[],
        &fixture(names[0]),
    );
    assert_eq!(one.status, 200, "{}", one.text());
    let one = one.json();
    assert_eq!(modules_of(&one)[0], modules_of(&expected)[0]);
    assert_eq!(one["images"][0]["frame"]["origin"], names[0]);

    // The batch as a form, in every format.
    let bytes: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&bytes)
        .map(|(n, b)| (*n, b.as_slice()))
        .collect();
    let (body, content_type) = multipart(&files);
    let post = |query: &str| {
        let a = request(
            server.addr,
            "POST",
            &format!("/api/v1/detect{query}"),
            &[("Content-Type", &content_type)],
            &body,
        );
        assert_eq!(a.status, 200, "{query}: {}", a.text());
        a
    };
    let report = post("").json();
    assert_eq!(modules_of(&report), modules_of(&expected));
    assert_eq!(report["summary"], expected["summary"]);
    assert_eq!(
        report["defects"].as_array().unwrap().len(),
        expected["defects"].as_array().unwrap().len()
    );
    let modules_total = report["summary"]["modules"].as_u64().unwrap();
    assert!(modules_total > 0);

    let csv = post("?format=csv").text();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            l.split(',')
                .map(|f| f.trim_matches('"').to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len() as u64, modules_total, "one CSV row per module");
    let mut r = rows.iter();
    for image in report["images"].as_array().unwrap() {
        for m in image["modules"].as_array().unwrap() {
            let row = r.next().unwrap();
            assert_eq!(
                row[col("image")],
                image["frame"]["origin"].as_str().unwrap()
            );
            assert_eq!(row[col("module")], m["index"].to_string());
            assert_eq!(row[col("defective")], m["defective"].to_string());
            assert_eq!(
                row[col("anomaly_class")],
                m["anomaly_class"].as_str().unwrap()
            );
            let score: f64 = row[col("defect_score")].parse().unwrap();
            assert!((score - m["defect_score"].as_f64().unwrap()).abs() < 1e-6);
        }
    }

    let defects = report["defects"].as_array().unwrap();
    assert!(!defects.is_empty(), "the fixtures have defects");
    let geo: Value = serde_json::from_slice(&post("?format=geojson").body).unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    let features = geo["features"].as_array().unwrap();
    assert_eq!(
        features.len(),
        defects.len(),
        "every defect is placed (fixed position)"
    );
    // Each request is its own batch (its own event ids): the same defects, in order.
    for (f, d) in features.iter().zip(defects) {
        assert_eq!(f["properties"]["anomaly_class"], d["anomaly_class"]);
        assert_eq!(f["properties"]["frames_seen"], d["frames_seen"]);
        let source = f["properties"]["position_source"].as_str().unwrap();
        assert!(!source.is_empty());
        if source.starts_with("configured fixed") {
            assert_eq!(
                f["geometry"]["coordinates"],
                serde_json::json!([8.25, 47.5])
            );
        }
    }
    let kml = post("?format=kml").text();
    assert!(
        kml.starts_with("<?xml") && kml.contains("<kml xmlns=\"http://www.opengis.net/kml/2.2\">")
    );
    assert_eq!(kml.matches("<Placemark>").count(), features.len());
    for f in features {
        let c = &f["geometry"]["coordinates"];
        assert!(kml.contains(&format!("<coordinates>{},{}</coordinates>", c[0], c[1])));
    }

    // The annotated picture of a raw upload.
    let jpeg = request(
        server.addr,
        "POST",
        "/api/v1/detect?annotated=1",
        &[],
        &fixture(names[0]),
    );
    assert_eq!(jpeg.status, 200);
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    let picture =
        image::load_from_memory_with_format(&jpeg.body, image::ImageFormat::Jpeg).unwrap();
    assert_eq!(
        picture.width() as u64,
        one["images"][0]["frame"]["width"].as_u64().unwrap()
    );
    server.assert_healthy(&[]);
}

#[test]
fn bad_requests_get_their_codes_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "max_upload_mib = 4\nqueue_depth = 1\ntoken_file = \"{}\"",
            token_file.display()
        ),
    );
    let server = Server::start(Some(&config));
    let auth = [("Authorization", "Bearer s3cret-token")];
    let image = fixture("001R.jpg");

    let none = request(server.addr, "POST", "/api/v1/detect", &[], &image);
    assert_eq!(none.status, 401, "{}", none.text());
    assert!(none.json()["error"].as_str().unwrap().contains("token"));
    assert!(none.header("www-authenticate").is_some());
    let wrong = request(
        server.addr,
        "GET",
        "/api/v1/status",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.json()["error"].as_str().unwrap().contains("wrong"));

    let big = request(
        server.addr,
        "POST",
        "/api/v1/detect",
        &auth,
        &vec![0xFFu8; 5 * 1024 * 1024],
    );
    assert_eq!(big.status, 413, "{}", big.text());
    assert!(
        big.json()["error"].as_str().unwrap().contains("4 MiB"),
        "{}",
        big.text()
    );

    let html = request(
        server.addr,
        "POST",
        "/api/v1/detect?name=photo.jpg",
        &auth,
        b"<html>not an image</html>",
    );
    assert_eq!(html.status, 415, "{}", html.text());
    assert!(html.json()["error"].as_str().unwrap().contains("photo.jpg"));

    // A flood: one batch in progress, one waiting, the rest refused.
    let copies: Vec<(&str, &[u8])> = (0..4).map(|_| ("001R.jpg", image.as_slice())).collect();
    let (body, content_type) = multipart(&copies);
    let addr = server.addr;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (body, content_type) = (body.clone(), content_type.clone());
            std::thread::spawn(move || {
                let headers = [
                    ("Authorization", "Bearer s3cret-token"),
                    ("Content-Type", content_type.as_str()),
                ];
                let a = request(addr, "POST", "/api/v1/detect", &headers, &body);
                (
                    a.status,
                    a.header("retry-after").map(str::to_string),
                    a.text(),
                )
            })
        })
        .collect();
    let answers: Vec<_> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(answers.iter().any(|a| a.0 == 200), "{answers:?}");
    assert!(!refused.is_empty(), "a full queue refuses: {answers:?}");
    for r in &refused {
        assert!(r.1.is_some(), "503 carries Retry-After: {r:?}");
        assert!(r.2.contains("queue is full"), "{r:?}");
    }
    assert!(
        answers.iter().all(|a| a.0 == 200 || a.0 == 503),
        "{answers:?}"
    );

    // Still healthy: status, and a normal upload.
    server.assert_healthy(&auth);
    let ok = request(server.addr, "POST", "/api/v1/detect", &auth, &image);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let missing = request(server.addr, "GET", "/api/v1/nothing", &auth, b"");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
}

/// Uploads are decoded under the configuration's `[source] max_pixels`: a
/// limit below a real 640x512 frame refuses it (422, naming the key to
/// raise) and the server stays healthy.
#[test]
fn uploads_are_decoded_under_the_configured_pixel_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[source]\nmax_pixels = 100000\n")).unwrap();
    let server = Server::start(Some(&config));
    let answer = request(
        server.addr,
        "POST",
        "/api/v1/detect?name=001R.jpg",
        &[],
        &fixture("001R.jpg"),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    let error = answer.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("001R.jpg")
            && error.contains("640x512")
            && error.contains("[source] max_pixels = 100000"),
        "{error}"
    );
    server.assert_healthy(&[]);
}

#[test]
fn a_basic_login_or_the_token_opens_the_api_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "pa:ss w0rd\n").unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
    // Relative files: read beside the configuration file.
    let config = write_config(
        dir.path(),
        "username = \"inspector\"\npassword_file = \"password\"\ntoken_file = \"token\"",
    );
    let server = Server::start(Some(&config));
    let status =
        |headers: &[(&str, &str)]| request(server.addr, "GET", "/api/v1/status", headers, b"");
    // base64("inspector:pa:ss w0rd") and base64("inspector:pa:ss w0rD").
    let right = [("Authorization", "Basic aW5zcGVjdG9yOnBhOnNzIHcwcmQ=")];
    let wrong = [("Authorization", "Basic aW5zcGVjdG9yOnBhOnNzIHcwckQ=")];

    let none = status(&[]);
    assert_eq!(none.status, 401, "{}", none.text());
    let challenges: Vec<&str> = none
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        challenges,
        ["Basic realm=\"pvtherm\"", "Bearer realm=\"pvtherm\""],
        "a browser is asked for the login"
    );
    let message = none.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("[http] username") && message.contains("token"),
        "{message}"
    );

    let refused = status(&wrong);
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"pvtherm\"")
    );
    assert!(refused.json()["error"].as_str().unwrap().contains("wrong"));
    let image = fixture("001R.jpg");
    let upload = request(server.addr, "POST", "/api/v1/detect", &wrong, &image);
    assert_eq!(upload.status, 401, "no analysis without the login");

    let ok = status(&right);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["login_required"], true);
    assert_eq!(ok.json()["token_required"], true);
    server.assert_healthy(&[("Authorization", "Bearer s3cret-token")]);
    let upload = request(server.addr, "POST", "/api/v1/detect", &right, &image);
    assert_eq!(upload.status, 200, "{}", upload.text());
    // The pages carry no data: they load, and their API calls bring the prompt.
    for page in ["/", "/live"] {
        assert_eq!(
            request(server.addr, "GET", page, &[], b"").status,
            200,
            "{page}"
        );
    }
}

/// Headless Chromium under the DevTools protocol, killed when dropped.
struct Browser {
    child: Child,
    page: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    /// What to answer a login prompt with, once `Fetch` is enabled
    /// ([`Browser::log_in_when_asked`]): what a user would type.
    login: Option<(String, String)>,
    /// Login prompts the browser met (HTTP auth challenges).
    prompts: u32,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on `url`, or `None` when it is not installed.
    fn open(url: &str) -> Option<Browser> {
        let exe = ["chromium", "chromium-browser"].into_iter().find(|e| {
            Command::new(e)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=900,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/<id>"
        let mut port = None;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                port = rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
                break;
            }
        }
        let port = port.expect("Chromium prints its DevTools address");
        let devtools = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        let ws_url = loop {
            let list = request(devtools, "GET", "/json/list", &[], b"").json();
            let page = list
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string));
            if let Some(u) = page {
                break u;
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let stream = TcpStream::connect(devtools).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (page, _) = tungstenite::client(ws_url.as_str(), stream).expect("DevTools websocket");
        Some(Browser {
            child,
            page,
            next_id: 1,
            login: None,
            prompts: 0,
            _profile: profile,
        })
    }

    /// Sends one DevTools command without waiting; returns its id.
    fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.page
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        id
    }

    /// From now on, lets every request through and answers each login
    /// prompt (HTTP auth challenge) with `user` and `password`, as a user
    /// typing them into the browser's dialog would.
    fn log_in_when_asked(&mut self, user: &str, password: &str) {
        self.login = Some((user.into(), password.into()));
        self.call(
            "Fetch.enable",
            serde_json::json!({"handleAuthRequests": true}),
        );
    }

    /// Answers the `Fetch` events [`Browser::log_in_when_asked`] asked for.
    fn on_event(&mut self, event: &Value) {
        let request = event["params"]["requestId"].clone();
        match event["method"].as_str() {
            Some("Fetch.requestPaused") => {
                self.send(
                    "Fetch.continueRequest",
                    serde_json::json!({"requestId": request}),
                );
            }
            Some("Fetch.authRequired") => {
                self.prompts += 1;
                let (username, password) = self.login.clone().expect("a login to answer with");
                self.send(
                    "Fetch.continueWithAuth",
                    serde_json::json!({"requestId": request, "authChallengeResponse": {
                        "response": "ProvideCredentials", "username": username, "password": password}}),
                );
            }
            _ => {}
        }
    }

    /// Sends one DevTools command and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        loop {
            let reply = self.page.read().expect("DevTools answer");
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
            self.on_event(&v);
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    fn wait_for(&mut self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.eval(expression) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "page never got to: {expression}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 back to bytes (Chromium's screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (value(c) as u32) << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn a_browser_uploads_on_the_page_and_sees_the_modules() {
    let server = Server::start(None);
    let Some(mut browser) = Browser::open(&format!("http://{}/", server.addr)) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium is not installed (scripts/setup-debian.sh --test installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); the upload page was not tested in a browser");
        return;
    };
    let file = Path::new(FIXTURES).join("20180630_154039.jpg");
    let expected = detect_json(std::slice::from_ref(&file), None);
    let (count, defective, _) = modules_of(&expected).remove(0);
    assert!(!defective.is_empty(), "the fixture has a defective module");

    browser.wait_for(
        "document.readyState === 'complete' && !!document.getElementById('files')",
        Duration::from_secs(20),
    );
    let doc = browser.call("DOM.getDocument", serde_json::json!({}));
    let input = browser.call(
        "DOM.querySelector",
        serde_json::json!({"nodeId": doc["root"]["nodeId"], "selector": "#files"}),
    );
    browser.call(
        "DOM.setFileInputFiles",
        serde_json::json!({"nodeId": input["nodeId"], "files": [file.to_str().unwrap()]}),
    );
    browser.wait_for(
        "!document.getElementById('overview').hidden && document.querySelectorAll('#modules tbody tr').length > 0",
        Duration::from_secs(60),
    );
    let rows = browser.eval("document.querySelectorAll('#modules tbody tr').length");
    assert_eq!(
        rows.as_u64(),
        Some(count),
        "one table row per detected module"
    );
    let marked = browser.eval(
        "Array.from(document.querySelectorAll('#modules tbody tr.defective')).map(r => Number(r.cells[2].textContent))",
    );
    let mut marked: Vec<u64> = marked
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    marked.sort();
    assert_eq!(marked, defective, "the defective modules are marked");
    let first = browser.eval("document.querySelector('#modules tbody tr').className");
    assert_eq!(first, "defective", "defective modules come first");
    let polygons = browser.eval("document.querySelectorAll('.figure polygon').length");
    assert_eq!(
        polygons.as_u64(),
        Some(count),
        "each module is clickable on the picture"
    );
    browser.eval(
        "document.querySelector('.figure polygon').dispatchEvent(new MouseEvent('click')); 0",
    );
    let detail = browser.eval("document.getElementById('detail').textContent");
    assert!(
        detail.as_str().unwrap().contains("defect score"),
        "{detail}"
    );

    let shot = browser.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"));
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-test");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("upload-overview.png"), png).unwrap();
}

#[test]
fn a_browser_asked_for_the_basic_login_gets_into_the_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "pa:ss w0rd\n").unwrap();
    let config = write_config(
        dir.path(),
        "username = \"inspector\"\npassword_file = \"password\"",
    );
    let server = Server::start(Some(&config));
    let Some(mut browser) = Browser::open("about:blank") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium is not installed (scripts/setup-debian.sh --test installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed; the browser login was not tested");
        return;
    };
    browser.log_in_when_asked("inspector", "pa:ss w0rd");
    browser.call(
        "Page.navigate",
        serde_json::json!({"url": format!("http://{}/", server.addr)}),
    );
    // The page's own status call meets the challenge, the browser asks for
    // the login, and from then on the page's API calls go through.
    browser.wait_for(
        "document.readyState === 'complete' && !!document.getElementById('token-box')",
        Duration::from_secs(20),
    );
    browser.eval("fetch('/api/v1/status').then(r => { window.statusCode = r.status; }); 0");
    browser.wait_for("window.statusCode === 200", Duration::from_secs(20));
    assert!(browser.prompts >= 1, "the browser was asked for the login");
}

#[test]
fn daemon_frame_count_is_unchanged_while_uploads_hammer_the_api() {
    let broker = mosquitto::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let n = 6;
    for i in 0..n {
        std::fs::copy(
            Path::new(FIXTURES).join("001R.jpg"),
            frames.join(format!("{i:03}.jpg")),
        )
        .unwrap();
    }
    let port = mosquitto::free_port();
    let config = dir.path().join("pvtherm.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"web-1\"\n[source]\nkind = \"replay\"\n[source.replay]\npath = \"{}\"\nfps = 2\nloop = false\n[output]\nsnapshot_interval = \"200ms\"\nstats_interval = \"500ms\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\ndrain_timeout = \"20s\"\n[outbox]\npath = \"{}\"\n[http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nqueue_depth = 1\n",
            frames.display(),
            broker.port(),
            dir.path().join("outbox.sqlite").display()
        ),
    )
    .unwrap();
    let sub = mosquitto::Subscriber::start(&broker.mqtt_config(), "pvtherm/web-1/#", None);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon's web server never listened"
        );
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Uploads hammer the API while the replay runs (bounded: until it ends).
    let image = fixture("030R.jpg");
    let (mut ok, mut refused, mut saw_snapshot, mut saw_camera) = (0, 0, false, false);
    // Uploads still running when the replay ends are cut by the shutdown.
    let mut cut = 0;
    while daemon.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let hammer: Vec<_> = (0..3)
            .map(|_| {
                let image = image.clone();
                std::thread::spawn(move || {
                    request_unless_stopping(addr, "POST", "/api/v1/detect", &[], &image)
                        .map(|a| a.status)
                })
            })
            .collect();
        for h in hammer {
            match h.join().unwrap() {
                Some(200) => ok += 1,
                Some(503) => refused += 1,
                Some(other) => panic!("upload answered {other}"),
                None => cut += 1,
            }
        }
        if TcpStream::connect(addr).is_err() {
            break; // shutting down
        }
        let status = request(addr, "GET", "/api/v1/status", &[], b"");
        if status.status == 200 {
            let s = status.json();
            saw_camera |= s["camera"]["state"] == "online";
            if s["snapshot_seq"].is_u64() {
                let snap = request(addr, "GET", "/api/v1/snapshot.jpg", &[], b"");
                if snap.status == 200 {
                    image::load_from_memory_with_format(&snap.body, image::ImageFormat::Jpeg)
                        .expect("the live snapshot is a JPEG");
                    saw_snapshot = true;
                }
            }
        }
    }
    let status = daemon.wait().unwrap();
    let mut err = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(ok > 0, "some uploads were analysed ({refused} refused)");
    assert!(
        cut <= 3,
        "only the last round of uploads meets the shutdown: {cut} cut"
    );
    assert!(saw_camera, "the status showed the camera");
    assert!(saw_snapshot, "the live snapshot was served");
    let t = "pvtherm/web-1/stats";
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| m.iter().any(|r| r.topic == t
            && serde_json::from_slice::<Value>(&r.payload)
                .is_ok_and(|v| v["frames_processed"] == n)))
    );
    let stats = sub.on_topic(t);
    let last: Value = serde_json::from_slice(&stats.last().unwrap().payload).unwrap();
    assert_eq!(last["frames_captured"], n, "{last}");
    assert_eq!(
        last["frames_processed"], n,
        "every frame was processed: {last}"
    );
    assert_eq!(last["frames_dropped"], 0, "{last}");
}

/// A child process killed and reaped when dropped, so a failed assertion
/// leaves no daemon running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_live_page_shows_the_snapshot_of_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let port = mosquitto::free_port();
    let config = dir.path().join("pvtherm.toml");
    // No broker: the daemon keeps its messages in the outbox; the page does not care.
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"replay\"\n[source.replay]\npath = \"{}\"\nfps = 2\nloop = true\n[output]\nsnapshot_interval = \"200ms\"\nstats_interval = \"500ms\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n[outbox]\npath = \"{}\"\n[http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n",
            Path::new(FIXTURES).join("20180630_154039.jpg").display(),
            mosquitto::free_port(),
            dir.path().join("outbox.sqlite").display()
        ),
    )
    .unwrap();
    let mut daemon = Reaped(
        Command::new(env!("CARGO_BIN_EXE_pvtherm"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon's web server never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let browser = Browser::open(&format!("http://{addr}/live"));
    let Some(mut browser) = browser else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium is not installed (scripts/setup-debian.sh --test installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed; the live page was not tested in a browser");
        return;
    };
    browser.wait_for(
        "document.getElementById('snapshot').naturalWidth > 0 && document.getElementById('health').textContent.includes('online')",
        Duration::from_secs(30),
    );
    let width = browser.eval("document.getElementById('snapshot').naturalWidth");
    assert!(width.as_u64().unwrap() > 100, "{width}");
    let shot = browser.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-test");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("live.png"),
        base64_decode(shot["data"].as_str().unwrap()),
    )
    .unwrap();
    drop(browser);
    // SIGTERM: the daemon's own stop path.
    let stopped = Command::new("kill")
        .arg(daemon.0.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
