//! Where the camera is: a fixed position (a pole-mounted box) or the latest
//! fix from gpsd (a drone or a vehicle), so defect events carry coordinates
//! the O&M team can walk to.
//!
//! A second source beside the frame source: the daemon reads
//! `PositionSource::current` for each frame and hands it to the analysis,
//! which only attaches it to events and never talks to gpsd itself.
//!
//! gpsd speaks JSON lines over TCP: after `?WATCH={"enable":true,"json":true}`
//! it streams reports; `TPV` reports carry the fix (`mode` 2 = 2D, 3 = 3D,
//! `lat`, `lon`, `alt` or `altMSL`, `time`). A background thread keeps the
//! latest fix and reconnects when gpsd goes away.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::lock::IgnorePoison;

/// Which position source to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PositionSourceKind {
    /// No position: events carry none.
    None,
    /// The fixed `latitude` / `longitude` / `altitude` from the config.
    Fixed,
    /// The latest fix from gpsd at `gpsd_address`.
    Gpsd,
}

/// `[analysis.position]`: where positions for events come from. The section
/// stays under `[analysis]` because it says where the analysis's events are;
/// the source itself is started by the daemon (see [`PositionSource`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PositionConfig {
    /// `none` (default), `fixed` or `gpsd`.
    pub(crate) source: PositionSourceKind,
    /// Latitude in degrees (WGS84), for `source = "fixed"`.
    pub(crate) latitude: Option<f64>,
    /// Longitude in degrees (WGS84), for `source = "fixed"`.
    pub(crate) longitude: Option<f64>,
    /// Altitude in metres, optional, for `source = "fixed"`.
    pub(crate) altitude: Option<f64>,
    /// gpsd address (default `127.0.0.1:2947`, gpsd's standard port).
    pub(crate) gpsd_address: String,
    /// A gpsd fix older than this is not used (default `"5s"`). Read from
    /// `max_fix_age_s` (seconds) in older files.
    #[serde(with = "crate::config_value::duration", alias = "max_fix_age_s")]
    pub(crate) max_fix_age: Duration,
}

impl Default for PositionConfig {
    fn default() -> Self {
        PositionConfig {
            source: PositionSourceKind::None,
            latitude: None,
            longitude: None,
            altitude: None,
            gpsd_address: "127.0.0.1:2947".into(),
            max_fix_age: Duration::from_secs(5),
        }
    }
}

impl PositionConfig {
    /// Checks the values; errors name the key.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.source == PositionSourceKind::Fixed {
            let (Some(lat), Some(lon)) = (self.latitude, self.longitude) else {
                bail!("analysis.position: source = \"fixed\" needs latitude and longitude");
            };
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                bail!("analysis.position: latitude {lat} / longitude {lon} out of range (-90..90 / -180..180)");
            }
        }
        if let Some(altitude) = self.altitude {
            crate::config_value::in_range(
                "[analysis.position] altitude",
                altitude,
                -1000.0..=100_000.0,
                " m",
            )?;
        }
        crate::config_value::duration_in_range(
            "[analysis.position] max_fix_age",
            self.max_fix_age,
            Duration::from_millis(1)..=crate::config_value::MAX_PERIOD,
        )?;
        if self.source == PositionSourceKind::Gpsd && self.gpsd_address.trim().is_empty() {
            bail!("analysis.position.gpsd_address is empty (e.g. \"127.0.0.1:2947\")");
        }
        Ok(())
    }
}

/// A camera position attached to events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Degrees, WGS84.
    pub latitude: f64,
    /// Degrees, WGS84.
    pub longitude: f64,
    /// Metres, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub altitude: Option<f64>,
    /// `fixed` or `gpsd`.
    pub source: String,
    /// Age of the gpsd fix in seconds when it was used (absent for fixed positions).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fix_age_s: Option<f64>,
    /// gpsd's time of the fix (RFC 3339 as gpsd sent it), when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fix_time: Option<String>,
}

/// The latest gpsd fix and when it arrived.
type SharedFix = Arc<Mutex<Option<(Position, Instant)>>>;

/// A position source built from [`PositionConfig`]. Owns the gpsd thread,
/// which stops when this value is dropped.
#[derive(Debug)]
pub(crate) enum PositionSource {
    /// No position.
    None,
    /// Always this position.
    Fixed(Position),
    /// gpsd, read on a background thread.
    Gpsd(GpsdClient),
}

impl PositionSource {
    /// Builds the source; starts the gpsd thread for `gpsd` (which connects
    /// in the background, so a missing gpsd is not an error at start-up).
    pub(crate) fn from_config(cfg: &PositionConfig) -> Result<PositionSource> {
        cfg.validate()?;
        Ok(match cfg.source {
            PositionSourceKind::None => PositionSource::None,
            PositionSourceKind::Fixed => PositionSource::Fixed(Position {
                latitude: cfg.latitude.unwrap_or_default(),
                longitude: cfg.longitude.unwrap_or_default(),
                altitude: cfg.altitude,
                source: "fixed".into(),
                fix_age_s: None,
                fix_time: None,
            }),
            PositionSourceKind::Gpsd => {
                PositionSource::Gpsd(GpsdClient::start(&cfg.gpsd_address, cfg.max_fix_age)?)
            }
        })
    }

    /// The current position, if known (and, for gpsd, fresh enough).
    pub(crate) fn current(&self) -> Option<Position> {
        match self {
            PositionSource::None => None,
            PositionSource::Fixed(p) => Some(p.clone()),
            PositionSource::Gpsd(g) => g.latest(),
        }
    }
}

/// Reads TPV reports from gpsd on a background thread and keeps the latest fix.
#[derive(Debug)]
pub(crate) struct GpsdClient {
    fix: SharedFix,
    stop: Arc<AtomicBool>,
    max_age: Duration,
    thread: Option<JoinHandle<()>>,
}

impl GpsdClient {
    /// Starts the reader thread for gpsd at `address` (`host:port`).
    fn start(address: &str, max_age: Duration) -> Result<GpsdClient> {
        let address = address.to_string();
        let fix: SharedFix = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (fix.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("gpsd".into())
            .spawn(move || gpsd_loop(&address, &f, &s))
            .context("cannot start the gpsd reader thread")?;
        Ok(GpsdClient {
            fix,
            stop,
            max_age,
            thread: Some(thread),
        })
    }

    /// The latest fix if it is younger than the configured maximum age.
    fn latest(&self) -> Option<Position> {
        let guard = self.fix.lock().ignore_poison();
        let (pos, at) = guard.as_ref()?;
        let age = at.elapsed();
        (age <= self.max_age).then(|| Position {
            fix_age_s: Some(age.as_secs_f64()),
            ..pos.clone()
        })
    }
}

impl Drop for GpsdClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long one blocking read or connect waits before checking the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Connects, watches, reads; reconnects with a growing pause (1 s .. 30 s).
fn gpsd_loop(address: &str, fix: &SharedFix, stop: &AtomicBool) {
    let mut backoff = Duration::from_secs(1);
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        match gpsd_session(address, fix, stop) {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                warned = false;
                if !stop.load(Ordering::Relaxed) {
                    log::warn!("gpsd at {address} closed the connection; reconnecting");
                }
            }
            Err(e) => {
                if !warned {
                    log::warn!(
                        "gpsd at {address}: {e:#}; retrying in the background (every 30 s at most)"
                    );
                    warned = true;
                } else {
                    log::debug!("gpsd at {address}: {e:#}");
                }
            }
        }
        let until = Instant::now() + backoff;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One connection: returns Ok when gpsd closes it or `stop` is set.
fn gpsd_session(address: &str, fix: &SharedFix, stop: &AtomicBool) -> Result<()> {
    let addr = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {address}"))?
        .next()
        .with_context(|| format!("{address} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream
        .set_read_timeout(Some(POLL))
        .context("set_read_timeout")?;
    stream
        .write_all(b"?WATCH={\"enable\":true,\"json\":true}\n")
        .context("cannot send ?WATCH")?;
    log::info!("connected to gpsd at {addr}");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                if line.ends_with('\n') {
                    if let Some(p) = parse_tpv(&line) {
                        *fix.lock().ignore_poison() = Some((p, Instant::now()));
                    }
                    line.clear();
                }
            }
            // Timeout: a partial line stays in `line`; keep reading.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("read from gpsd"),
        }
        if line.len() > 64 * 1024 {
            bail!("gpsd sent a line longer than 64 KiB");
        }
    }
    Ok(())
}

/// Parses one gpsd JSON line; `Some` for a TPV report with a 2D or 3D fix
/// and finite coordinates, `None` for anything else (VERSION, DEVICES, SKY,
/// TPV without fix, garbage).
fn parse_tpv(line: &str) -> Option<Position> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("class")?.as_str()? != "TPV" || v.get("mode")?.as_i64()? < 2 {
        return None;
    }
    let latitude = v
        .get("lat")?
        .as_f64()
        .filter(|l| (-90.0..=90.0).contains(l))?;
    let longitude = v
        .get("lon")?
        .as_f64()
        .filter(|l| (-180.0..=180.0).contains(l))?;
    let altitude = ["altMSL", "alt", "altHAE"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|a| a.as_f64()));
    Some(Position {
        latitude,
        longitude,
        altitude,
        source: "gpsd".into(),
        fix_age_s: None,
        fix_time: v.get("time").and_then(|t| t.as_str()).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const TPV: &str = r#"{"class":"TPV","device":"/dev/ttyACM0","mode":3,"time":"2024-06-01T10:00:00.000Z","lat":48.1234,"lon":11.5678,"altMSL":520.5}"#;

    #[test]
    fn parses_tpv_and_ignores_other_reports() {
        let p = parse_tpv(TPV).unwrap();
        assert_eq!(
            (p.latitude, p.longitude, p.altitude),
            (48.1234, 11.5678, Some(520.5))
        );
        assert_eq!(p.fix_time.as_deref(), Some("2024-06-01T10:00:00.000Z"));
        assert!(parse_tpv(r#"{"class":"TPV","mode":1}"#).is_none());
        assert!(parse_tpv(r#"{"class":"VERSION","release":"3.25"}"#).is_none());
        assert!(parse_tpv(r#"{"class":"TPV","mode":2,"lat":91.0,"lon":0}"#).is_none());
        assert!(parse_tpv("not json").is_none());
    }

    #[test]
    fn fixed_position_needs_coordinates() {
        let mut c = PositionConfig {
            source: PositionSourceKind::Fixed,
            ..Default::default()
        };
        assert!(PositionSource::from_config(&c).is_err());
        c.latitude = Some(47.0);
        c.longitude = Some(8.0);
        let p = PositionSource::from_config(&c).unwrap().current().unwrap();
        assert_eq!(
            (p.latitude, p.longitude, p.source.as_str()),
            (47.0, 8.0, "fixed")
        );
        let none = PositionSource::from_config(&PositionConfig::default()).unwrap();
        assert!(none.current().is_none());
    }

    #[test]
    fn reads_fix_from_fake_gpsd_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            // First connection: expect ?WATCH, send a version banner and a TPV, then hang up.
            for lat in [48.0, 49.0] {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut cmd = String::new();
                r.read_line(&mut cmd).unwrap();
                assert!(cmd.starts_with("?WATCH={\"enable\":true"));
                writeln!(s, r#"{{"class":"VERSION","release":"3.25"}}"#).unwrap();
                writeln!(
                    s,
                    r#"{{"class":"TPV","mode":3,"lat":{lat},"lon":11.0,"alt":500.0}}"#
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let cfg = PositionConfig {
            source: PositionSourceKind::Gpsd,
            gpsd_address: addr,
            max_fix_age: Duration::from_secs(60),
            ..Default::default()
        };
        let src = PositionSource::from_config(&cfg).unwrap();
        let wait_for = |lat: f64| {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if src.current().is_some_and(|p| p.latitude == lat) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        assert!(wait_for(48.0), "no fix from the first connection");
        assert!(wait_for(49.0), "no fix after reconnecting");
        let p = src.current().unwrap();
        assert_eq!(
            (p.longitude, p.altitude, p.source.as_str()),
            (11.0, Some(500.0), "gpsd")
        );
        server.join().unwrap();
        drop(src); // stops the thread without hanging
    }
}
