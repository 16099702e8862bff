//! Test harness: a real mosquitto (Debian package) on a free loopback port, with
//! optional password file, TLS (throwaway CA made with the `openssl` CLI) and
//! persistence; stop/restart on the same port; killed on drop. Plus a subscriber
//! that records every message with its topic, payload and retain flag.
//!
//! Include it from a test file with
//! `#[path = "common/mosquitto.rs"] mod mosquitto;`.
// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use pvtherm::publish::{MqttConfig, TlsConfig};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the broker should require.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// `(user, password)` pairs; when non-empty, anonymous access is off.
    pub users: Vec<(String, String)>,
    /// Serve TLS only, with a certificate for `127.0.0.1`/`localhost` signed by a
    /// throwaway CA (see [`Mosquitto::ca_file`]).
    pub tls: bool,
    /// Keep sessions and retained messages across [`Mosquitto::restart`] (saved on
    /// SIGTERM), so persistent subscribers miss nothing while the broker is down.
    pub persistence: bool,
    /// More configuration lines, appended as they are (e.g. a bridge section).
    pub extra: String,
}

/// A running (or stopped) mosquitto owned by a test.
pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
    ca_file: Option<PathBuf>,
}

impl Mosquitto {
    /// Starts mosquitto with default options (anonymous, plain TCP, no persistence).
    pub fn start() -> Mosquitto {
        Self::start_with(MosquittoOptions::default())
    }

    /// Writes the config (and password file / certificates) and starts mosquitto.
    pub fn start_with(options: MosquittoOptions) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut conf = format!(
            "user root\nlistener {port} 127.0.0.1\nlog_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            log = dir.path().join("mosquitto.log").display()
        );
        if options.users.is_empty() {
            conf.push_str("allow_anonymous true\n");
        } else {
            let pw = dir.path().join("passwd");
            for (i, (user, pass)) in options.users.iter().enumerate() {
                let mut cmd = Command::new("mosquitto_passwd");
                cmd.arg("-b");
                if i == 0 {
                    cmd.arg("-c");
                }
                run(cmd.arg(&pw).arg(user).arg(pass));
            }
            conf.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                pw.display()
            ));
        }
        let mut ca_file = None;
        if options.tls {
            let certs = make_certificates(dir.path());
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                certs.ca.display(),
                certs.cert.display(),
                certs.key.display()
            ));
            ca_file = Some(certs.ca);
        }
        if options.persistence {
            conf.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            ));
        }
        conf.push_str(&options.extra);
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let mut m = Mosquitto {
            dir,
            port,
            conf: conf_path,
            child: None,
            ca_file,
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mosquitto exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The throwaway CA certificate (TLS brokers only).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// mosquitto's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// A `[mqtt]` config pointing at this broker (TLS settings included).
    pub fn mqtt_config(&self) -> MqttConfig {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: self.ca_file.as_ref().map(|ca| TlsConfig {
                ca_file: Some(ca.clone()),
                ..TlsConfig::default()
            }),
            ..MqttConfig::default()
        }
    }

    /// Stops it with SIGTERM (it saves persistence, sends no last wills for clean
    /// clients) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts it again after [`Mosquitto::stop`] (same port, same config).
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.launch();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1 / localhost (EC P-256).
fn make_certificates(dir: &Path) -> Certificates {
    let p = |name: &str| dir.join(name);
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
        ])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-days",
            "2",
            "-subj",
            "/CN=pvtherm test CA",
        ])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.crt")));
    run(Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("server.ext"))
        .arg("-out")
        .arg(p("server.crt")));
    Certificates {
        ca: p("ca.crt"),
        cert: p("server.crt"),
        key: p("server.key"),
    }
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    /// The payload as text (lossy), for assertions.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A subscriber on a background thread (rumqttc sync client) that records messages.
/// With `persistent`, it uses a fixed client id and a persistent session (QoS 1), so
/// a broker with persistence queues messages for it while it reconnects.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<Received>>>,
    client: Client,
}

impl Subscriber {
    /// Subscribes to `filter` on the broker described by `config` (credentials and
    /// TLS included) and waits until the subscription is acknowledged.
    pub fn start(config: &MqttConfig, filter: &str, persistent: Option<&str>) -> Subscriber {
        let id = persistent
            .map(str::to_string)
            .unwrap_or_else(|| format!("test-sub-{}", free_port()));
        let mut options: MqttOptions = config.client_options(&id).expect("subscriber options");
        options.set_clean_session(persistent.is_none());
        let (client, mut connection) = Client::new(options, 64);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        {
            let messages = messages.clone();
            let client = client.clone();
            let filter = filter.to_string();
            std::thread::spawn(move || {
                for event in connection.iter() {
                    match event {
                        // A resumed session still has its subscription; subscribing
                        // again would replay retained messages as duplicates.
                        Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            let _ = subscribed_tx.send(());
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            messages.lock().unwrap().push(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            });
        }
        subscribed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscriber did not get SUBACK");
        Subscriber { messages, client }
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Messages received on one topic.
    pub fn on_topic(&self, topic: &str) -> Vec<Received> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `done(messages)` holds; returns whether it did within `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.messages.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Publishes one message (QoS 1) as a separate client and waits for the
/// broker's PUBACK: what a control room or Home Assistant would send.
pub fn publish_once(config: &MqttConfig, topic: &str, payload: &[u8], retain: bool) {
    let id = format!("test-pub-{}", free_port());
    let options = config.client_options(&id).expect("publisher options");
    let (client, mut connection) = Client::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
        .expect("queue publish");
    let deadline = Instant::now() + Duration::from_secs(10);
    for event in connection.iter() {
        assert!(Instant::now() < deadline, "no PUBACK for {topic}");
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("publish to {topic}: {e}"),
        }
    }
    let _ = client.disconnect();
}
