//! Service integration: how the daemon talks to systemd.
//!
//! - **Logging** ([`init_logging`]): to the systemd journal when the process
//!   runs under systemd with its stderr connected to journald, else one line
//!   per event on stderr. Key-value pairs of the `log` macros become journal
//!   fields, so `journalctl -u pvtherm -o json` can be filtered by them:
//!
//!   ```
//!   # let (seq, n) = (42_u64, 12_usize);
//!   log::info!(frame_sequence = seq, module_count = n; "frame processed");
//!   log::warn!(defect_id = "d-0042", frame_sequence = seq; "hotspot on a module");
//!   log::info!(broker_state = "connected"; "MQTT broker connected");
//!   ```
//!
//!   The journal stores these as `FRAME_SEQUENCE=42`, `MODULE_COUNT=12`,
//!   `DEFECT_ID=d-0042`, `BROKER_STATE=connected` (keys are upper-cased);
//!   stderr shows them as `frame_sequence=42 module_count=12` after the
//!   message. Use these names for these facts everywhere, so one
//!   `journalctl FRAME_SEQUENCE=42` finds everything about a frame.
//! - **Readiness and watchdog** ([`notify_ready`], `notify_watchdog`,
//!   [`notify_stopping`], [`notify_status`]): the `sd_notify` protocol
//!   (`Type=notify`, `WatchdogSec=` in `systemd/pvtherm.service`). Outside
//!   systemd (no `NOTIFY_SOCKET`) they do nothing.
//! - **Heartbeat** ([`Heartbeat`], [`WatchdogPinger`]): the pipeline beats after
//!   each processed frame or idle tick; a small thread sends `WATCHDOG=1` only
//!   while beats keep coming, so a stuck camera or inference thread stops the
//!   pings and systemd restarts the service.
//! - **Shutdown** ([`shutdown_signal`]): waits for SIGTERM (what `systemctl stop`
//!   sends) or SIGINT (Ctrl-C).

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use log::kv::{self, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use sd_notify::NotifyState;
use systemd_journal_logger::JournalLog;

use crate::lock::IgnorePoison;

/// The `SYSLOG_IDENTIFIER` of journal entries (`journalctl -t pvtherm`), and
/// the prefix of log targets that belong to this crate.
const IDENTIFIER: &str = "pvtherm";

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The journal when stderr is connected to it (`$JOURNAL_STREAM`, set by
    /// systemd for services), else stderr. What the daemon uses.
    Auto,
    /// The systemd journal through its native socket, with structured fields.
    /// Fails if journald is not running.
    Journal,
    /// One line per event on stderr, key-value pairs appended as `key=value`.
    Stderr,
}

/// Installs the process-wide logger, choosing journald or stderr
/// automatically ([`LogTarget::Auto`]), and returns where logs go.
///
/// `level` applies to pvtherm's own records; records of dependencies (MQTT
/// client, broker, tract, ...) are shown from `Warn` up only, unless `level`
/// is `Trace`, so that `info` stays one line per meaningful event.
pub fn init_logging(level: LevelFilter) -> anyhow::Result<LogTarget> {
    init_logging_to(level, LogTarget::Auto)
}

/// Installs the process-wide logger with an explicit target and returns the
/// target actually used (`Auto` resolves to `Journal` or `Stderr`).
///
/// Fails if a logger is already installed, or if `Journal` was asked for and
/// journald cannot be reached.
pub fn init_logging_to(level: LevelFilter, target: LogTarget) -> anyhow::Result<LogTarget> {
    let resolved = match target {
        LogTarget::Auto if systemd_journal_logger::connected_to_journal() => LogTarget::Journal,
        LogTarget::Auto => LogTarget::Stderr,
        other => other,
    };
    let filter = TargetFilter { level };
    let journal = match resolved {
        LogTarget::Journal => match JournalLog::new() {
            Ok(journal) => Some(journal.with_syslog_identifier(IDENTIFIER.to_string())),
            // Auto: stderr is the journal's stream anyway, just without fields.
            Err(_) if target == LogTarget::Auto => None,
            Err(err) => {
                return Err(err)
                    .context("cannot connect to journald at /run/systemd/journal/socket")
            }
        },
        _ => None,
    };
    let (logger, resolved): (Box<dyn Log>, _) = match journal {
        Some(inner) => (Box::new(Filtered { filter, inner }), LogTarget::Journal),
        None => (
            Box::new(Filtered {
                filter,
                inner: StderrLogger,
            }),
            LogTarget::Stderr,
        ),
    };
    log::set_boxed_logger(logger).context("a logger is already installed")?;
    log::set_max_level(filter.max_level());
    Ok(resolved)
}

/// Which records pass: pvtherm's own at `level`, dependencies' at `Warn` (all at `Trace`).
#[derive(Debug, Clone, Copy)]
struct TargetFilter {
    level: LevelFilter,
}

impl TargetFilter {
    fn max_level(self) -> LevelFilter {
        self.level.max(LevelFilter::Warn)
    }

    fn enabled(self, metadata: &Metadata) -> bool {
        // rumqttd (the demo's embedded broker) instruments its router with
        // error-level tracing spans, which reach `log` as one ERROR line per
        // packet, and its server logs every normal disconnect (and the start-up
        // probe) as an ERROR: noise, not errors, shown only at trace (router)
        // and debug (the rest). Its real failures surface through the
        // publisher's connection errors.
        let target = metadata.target();
        let rumqttd_from = if target.starts_with("rumqttd::router") {
            LevelFilter::Trace
        } else {
            LevelFilter::Debug
        };
        if target.starts_with("rumqttd") && self.level < rumqttd_from {
            return false;
        }
        let ours = metadata
            .target()
            .strip_prefix(IDENTIFIER)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        let limit = if ours || self.level == LevelFilter::Trace {
            self.level
        } else {
            LevelFilter::Warn.min(self.level)
        };
        metadata.level() <= limit
    }
}

/// A logger that applies a [`TargetFilter`] before handing records on.
struct Filtered<L> {
    filter: TargetFilter,
    inner: L,
}

impl<L: Log> Log for Filtered<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.filter.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The fallback logger: one line per record on stderr, written with a single
/// `write` so that lines from several threads do not interleave.
struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let line = format_line(SystemTime::now(), record);
        // Nowhere to report a failing stderr.
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = io::stderr().flush();
    }
}

/// Formats a record for stderr:
/// `2025-06-01T12:00:00.123Z INFO  pvtherm::pipeline: message key=value ...\n`.
fn format_line(now: SystemTime, record: &Record) -> String {
    let mut line = format!(
        "{} {:<5} {}: {}",
        humantime::format_rfc3339_millis(now),
        record.level(),
        record.target(),
        record.args()
    );
    let _ = record.key_values().visit(&mut AppendKeyValues(&mut line));
    // A message must stay one line, whatever it contains.
    let mut line = line.replace('\n', " | ");
    line.push('\n');
    line
}

/// Appends ` key=value` for each key-value pair; values with spaces, quotes or
/// `=` are quoted so the line stays parseable.
struct AppendKeyValues<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for AppendKeyValues<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let text = value.to_string();
        let plain =
            !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '"' || c == '=');
        if plain {
            let _ = write!(self.0, " {key}={text}");
        } else {
            let _ = write!(self.0, " {key}={text:?}");
        }
        Ok(())
    }
}

/// Sends one sd_notify message; a failure is logged, not returned: the daemon
/// keeps working (systemd will act on a missing READY or WATCHDOG itself).
fn notify(states: &[NotifyState], what: &str) {
    if let Err(err) = sd_notify::notify(states) {
        log::warn!("cannot notify systemd ({what}): {err}");
    }
}

/// Tells systemd the service is up (`READY=1`): call it once the model is
/// loaded and the frame source is open. With `Type=notify`, `systemctl start`
/// returns only then, and the watchdog starts counting.
pub fn notify_ready() {
    notify(&[NotifyState::Ready], "READY=1");
}

/// Tells systemd the service is alive (`WATCHDOG=1`). Usually sent by a
/// [`WatchdogPinger`], not called directly.
pub(crate) fn notify_watchdog() {
    notify(&[NotifyState::Watchdog], "WATCHDOG=1");
}

/// Tells systemd the service is shutting down (`STOPPING=1`), so that
/// `systemctl status` shows "deactivating" while the queue is flushed.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping], "STOPPING=1");
}

/// Sets the one-line status `systemctl status pvtherm` shows (`STATUS=...`),
/// e.g. "camera online, 8.7 fps, broker connected". Newlines become spaces
/// (the protocol is line-based).
pub fn notify_status(text: &str) {
    let text = text.replace(['\n', '\r'], " ");
    notify(&[NotifyState::Status(&text)], "STATUS");
}

/// The watchdog timeout systemd expects pings within (`WatchdogSec=`, passed
/// as `$WATCHDOG_USEC`), or `None` when no watchdog is asked for. Ping at
/// half of it: [`Heartbeat::start_watchdog`] does.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Proof of life from the pipeline: a counter that [`Heartbeat::beat`] bumps.
///
/// Clone it into each place that makes progress (the capture loop, the
/// inference worker's idle tick); a [`WatchdogPinger`] pings systemd only if
/// the counter moved since its previous ping.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    beats: Arc<AtomicU64>,
}

impl Heartbeat {
    /// A heartbeat that has not beaten yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records progress: call after each processed frame and on each idle tick
    /// (at least once per half watchdog interval, i.e. every 15 s with
    /// `WatchdogSec=30`).
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// How many beats so far (for tests and statistics).
    pub(crate) fn count(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// Starts pinging systemd's watchdog at half of [`watchdog_interval`]
    /// while this heartbeat keeps beating. Returns `None` (and starts
    /// nothing) when systemd asked for no watchdog. Keep the returned pinger
    /// alive for the life of the daemon.
    pub fn start_watchdog(&self) -> io::Result<Option<WatchdogPinger>> {
        let Some(timeout) = watchdog_interval() else {
            return Ok(None);
        };
        log::debug!(
            "systemd watchdog: {timeout:?}, pinging every {:?}",
            timeout / 2
        );
        WatchdogPinger::spawn(self.clone(), timeout / 2, notify_watchdog).map(Some)
    }
}

/// A thread that calls `ping` every `period` if the [`Heartbeat`] beat since
/// the previous check, and stays silent (logging a warning once) while it
/// does not. Stops when dropped or on [`WatchdogPinger::stop`].
#[derive(Debug)]
pub struct WatchdogPinger {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl WatchdogPinger {
    /// Spawns the pinger thread. `ping` is [`notify_watchdog`] in the daemon;
    /// tests pass a counter.
    pub(crate) fn spawn<F>(heartbeat: Heartbeat, period: Duration, mut ping: F) -> io::Result<Self>
    where
        F: FnMut() + Send + 'static,
    {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let (lock, cvar) = &*stop_thread;
                let mut seen = heartbeat.count();
                let mut stalled = false;
                let mut stopped = lock.lock().ignore_poison();
                loop {
                    let (guard, _) = cvar
                        .wait_timeout_while(stopped, period, |stop| !*stop)
                        .ignore_poison();
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    let now = heartbeat.count();
                    if now != seen {
                        seen = now;
                        if stalled {
                            log::info!("pipeline heartbeat is back; watchdog pings resume");
                            stalled = false;
                        }
                        ping();
                    } else if !stalled {
                        log::warn!(
                            "no pipeline heartbeat for {period:?}; withholding watchdog pings \
                             (systemd restarts the service if this lasts)"
                        );
                        stalled = true;
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (also done on drop). Call before
    /// [`notify_stopping`] so no ping follows it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().ignore_poison() = true;
        cvar.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WatchdogPinger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The signal that asked the daemon to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGTERM: `systemctl stop`, or the watchdog's restart.
    Terminate,
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        })
    }
}

/// Waits (in a tokio runtime) until SIGTERM or SIGINT arrives. Installing the
/// handlers replaces the default "die at once", so the daemon can finish the
/// frame in flight, flush its queue, publish `offline` and exit 0.
pub async fn shutdown_signal() -> io::Result<ShutdownSignal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => ShutdownSignal::Terminate,
        _ = int.recv() => ShutdownSignal::Interrupt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    fn metadata(target: &str, level: Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn filter_keeps_own_records_and_quiets_dependencies() {
        let f = TargetFilter {
            level: LevelFilter::Info,
        };
        assert!(f.enabled(&metadata("pvtherm::pipeline", Level::Info)));
        assert!(f.enabled(&metadata("pvtherm", Level::Info)));
        assert!(!f.enabled(&metadata("pvtherm::pipeline", Level::Debug)));
        assert!(!f.enabled(&metadata("rumqttc::state", Level::Info)));
        assert!(f.enabled(&metadata("rumqttc::state", Level::Warn)));
        // A crate whose name merely starts with "pvtherm" is not ours.
        assert!(!f.enabled(&metadata("pvtherm_extra", Level::Info)));
        let trace = TargetFilter {
            level: LevelFilter::Trace,
        };
        assert!(trace.enabled(&metadata("tract_core::model", Level::Trace)));
        let error = TargetFilter {
            level: LevelFilter::Error,
        };
        assert!(!error.enabled(&metadata("rumqttc::state", Level::Warn)));
        assert_eq!(error.max_level(), LevelFilter::Warn);
    }

    #[test]
    fn stderr_line_has_level_target_message_and_fields() {
        let kvs: [(&str, kv::Value); 3] = [
            ("frame_sequence", kv::Value::from(42_u64)),
            ("broker_state", kv::Value::from("connected")),
            ("camera", kv::Value::from("FLIR Lepton 3.5")),
        ];
        let line = format_line(
            SystemTime::UNIX_EPOCH,
            &Record::builder()
                .level(Level::Warn)
                .target("pvtherm::pipeline")
                .args(format_args!("frame late\nreally"))
                .key_values(&kvs)
                .build(),
        );
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z WARN  pvtherm::pipeline: frame late | really \
             frame_sequence=42 broker_state=connected camera=\"FLIR Lepton 3.5\"\n"
        );
    }

    #[test]
    fn pinger_pings_only_while_beats_come() {
        let heartbeat = Heartbeat::new();
        let pings = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pings);
        let pinger =
            WatchdogPinger::spawn(heartbeat.clone(), Duration::from_millis(20), move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        // Beating: pings arrive.
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            heartbeat.beat();
            std::thread::sleep(Duration::from_millis(5));
        }
        let while_beating = pings.load(Ordering::SeqCst);
        assert!(
            while_beating >= 3,
            "only {while_beating} pings while beating"
        );
        // Stalled: at most the one ping for beats just before the stall.
        std::thread::sleep(Duration::from_millis(200));
        let after_stall = pings.load(Ordering::SeqCst);
        assert!(after_stall <= while_beating + 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            pings.load(Ordering::SeqCst),
            after_stall,
            "pinged without beats"
        );
        // Stop returns promptly even with a long period.
        pinger.stop();
        let slow =
            WatchdogPinger::spawn(Heartbeat::new(), Duration::from_secs(3600), || {}).unwrap();
        let t = Instant::now();
        drop(slow);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
