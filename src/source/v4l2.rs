//! A USB thermal camera (or any V4L2 capture device) as a [`FrameSource`]:
//! format negotiation, mmap streaming, driver timestamps and sequence gaps,
//! and recovery from an unplugged or stalled camera without restarting.
//!
//! The source does its blocking I/O in [`FrameSource::next_event`], which the
//! pipeline calls on the source's own thread. Recovery works as a small state
//! machine: a stream error, ENODEV or no frame for `stall_timeout` closes the
//! device and reports `Offline` once; the device is then reopened every
//! `reopen_interval` (for `device = "auto"` by rescanning `/dev/video*`, as a
//! replugged camera may come back under another number), and `Online` is
//! reported when frames flow again.

mod negotiate;
mod probe;
mod timing;

pub use negotiate::{describe_offers, fourcc_to_string, Choice, FormatOffer, Request, SizeOffer};
pub use probe::{describe_device, video_nodes, DeviceInfo, FormatInfo, SizeInfo};

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use v4l::buffer::{Flags as BufFlags, Type as BufType};
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture as _;
use v4l::{Device, Format, FourCC};

use crate::formats::{self, BufferLayout, PixelFormat, RadiometricMode};
use crate::frame::Frame;
use crate::source::{FrameSource, SourceEvent, SourceState};
use probe::guarded;
use timing::{SequenceTracker, TimestampMapper};

/// Number of mmap buffers requested from the driver: enough to ride out a
/// slow frame, few enough that frames are not delivered with latency.
const BUFFER_COUNT: u32 = 4;

/// `errno` of a vanished device (the v4l crate tolerates only this one on drop).
const ENODEV: i32 = 19;

/// Consecutive undecodable buffers after which the source gives up: the
/// device delivers something other than what was negotiated.
const MAX_CONSECUTIVE_BAD_FRAMES: u32 = 50;

/// Which device to open: a path, or the first usable `/dev/video*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first node that can deliver a format pvtherm uses, rescanned on reopen.
    #[default]
    Auto,
    /// A fixed node; prefer a stable `/dev/v4l/by-id/...` link.
    Path(PathBuf),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err("device is empty: use \"auto\" or a path such as /dev/video0".into()),
            "auto" => Ok(DeviceChoice::Auto),
            path => Ok(DeviceChoice::Path(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The pixel format to negotiate: `auto` or a fixed layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    /// Y16, then the TC001 layout, then GREY, then YUYV: radiometric first.
    #[default]
    Auto,
    /// Exactly this layout.
    Fixed(PixelFormat),
}

impl FromStr for FormatChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(FormatChoice::Auto)
        } else {
            s.parse::<PixelFormat>()
                .map(FormatChoice::Fixed)
                .map_err(|e| e.replace("use one of", "use auto or one of"))
        }
    }
}

impl fmt::Display for FormatChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatChoice::Auto => f.write_str("auto"),
            FormatChoice::Fixed(p) => p.fmt(f),
        }
    }
}

/// Config section `[source.v4l2]`: which camera, which format, and how
/// patiently to treat a camera that stops delivering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct V4l2Config {
    /// Device node (`/dev/video0`, better a `/dev/v4l/by-id/...` link) or
    /// `auto` = the first device that offers a usable format.
    #[serde(with = "string_repr")]
    pub device: DeviceChoice,
    /// `auto` (Y16, then TC001, then GREY, then YUYV), `Y16`, `TC001`, `GREY` or `YUYV`.
    #[serde(with = "string_repr")]
    pub format: FormatChoice,
    /// Frame width to request; 0 = the device's (first) size for the format.
    pub width: u32,
    /// Frame height to request; 0 = the device's (first) size for the format.
    /// For TC001 either 384 (the device frame) or 192 (the thermal half).
    pub height: u32,
    /// Frames per second to request; 0 = the driver's default.
    pub fps: u32,
    /// Whether Y16 values are centi-kelvin: `auto` (plausibility check per
    /// frame), `yes` or `no`. Ignored for TC001 (always) and GREY/YUYV (never).
    pub radiometric: RadiometricMode,
    /// Time without a frame after which the camera counts as lost.
    #[serde(with = "crate::config_value::duration")]
    pub stall_timeout: Duration,
    /// Time between attempts to reopen a lost camera.
    #[serde(with = "crate::config_value::duration")]
    pub reopen_interval: Duration,
    /// Extra time a TC001 may pause before it counts as stalled: its
    /// shutter calibration ("click") stops the stream for up to a second.
    #[serde(with = "crate::config_value::duration")]
    pub tc001_calibration_grace: Duration,
}

impl Default for V4l2Config {
    fn default() -> Self {
        V4l2Config {
            device: DeviceChoice::Auto,
            format: FormatChoice::Auto,
            width: 0,
            height: 0,
            fps: 0,
            radiometric: RadiometricMode::Auto,
            stall_timeout: Duration::from_secs(5),
            reopen_interval: Duration::from_secs(2),
            tc001_calibration_grace: Duration::from_millis(1500),
        }
    }
}

/// Serde through `FromStr` / `Display`, so config errors carry the parse message.
mod string_repr {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub(crate) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl V4l2Config {
    /// Checks values that serde cannot: durations a clock can add (a camera
    /// at 1 fps needs a `stall_timeout` above 1 s), sizes and rates a driver
    /// could offer.
    pub fn validate(&self) -> anyhow::Result<()> {
        use crate::config_value::{duration_in_range, in_range, MAX_PERIOD};
        duration_in_range(
            "[source.v4l2] stall_timeout",
            self.stall_timeout,
            Duration::from_millis(100)..=MAX_PERIOD,
        )?;
        duration_in_range(
            "[source.v4l2] reopen_interval",
            self.reopen_interval,
            Duration::ZERO..=MAX_PERIOD,
        )?;
        duration_in_range(
            "[source.v4l2] tc001_calibration_grace",
            self.tc001_calibration_grace,
            Duration::ZERO..=MAX_PERIOD,
        )?;
        in_range(
            "[source.v4l2] width",
            self.width,
            0..=16384,
            " px (0 = the device's)",
        )?;
        in_range(
            "[source.v4l2] height",
            self.height,
            0..=16384,
            " px (0 = the device's)",
        )?;
        in_range(
            "[source.v4l2] fps",
            self.fps,
            0..=1000,
            " (0 = the driver's default)",
        )?;
        if (self.width == 0) != (self.height == 0) {
            bail!(
                "[source.v4l2] width = {}, height = {}: give both or neither (0 = the device's size)",
                self.width,
                self.height
            );
        }
        Ok(())
    }

    fn request(&self) -> Request {
        Request {
            format: match self.format {
                FormatChoice::Auto => None,
                FormatChoice::Fixed(f) => Some(f),
            },
            width: self.width,
            height: self.height,
        }
    }
}

/// An open, streaming device.
struct Capture {
    path: PathBuf,
    card: String,
    layout: BufferLayout,
    /// Declared before `device` so it is released first (it holds the mmaps).
    stream: Option<Stream<'static>>,
    /// Kept open for the lifetime of the stream (controls, format).
    device: Option<Device>,
    last_frame_at: Instant,
}

impl Capture {
    /// Opens `path`, negotiates the format and starts mmap streaming.
    fn open(path: &Path, config: &V4l2Config) -> anyhow::Result<Capture> {
        let where_ = path.display();
        let device = Device::with_path(path).with_context(|| format!("cannot open {where_}"))?;
        let caps = guarded("querying capabilities", || device.query_caps())
            .with_context(|| format!("{where_}: not a V4L2 device"))?;
        if !probe::can_stream_video(&caps) {
            bail!("{where_} ({}) is not a streaming video capture node; `pvtherm cameras` lists the devices", caps.card);
        }
        let offers = probe::query_offers(&device)
            .with_context(|| format!("{where_}: cannot list formats"))?;
        let choice = negotiate::choose(&offers, config.request()).map_err(|e| {
            anyhow::anyhow!(
                "{where_} ({}): {e}; set [source.v4l2] format/width/height to one of these",
                caps.card
            )
        })?;
        // Format::new: a fresh format asks the driver for its own stride;
        // modifying the current format would keep the old bytesperline.
        let want = Format::new(
            choice.width,
            choice.height,
            FourCC::new(&choice.format.fourcc()),
        );
        let got =
            guarded("setting the format", || device.set_format(&want)).with_context(|| {
                format!(
                    "{where_}: the driver refused {} {}x{}",
                    choice.format, choice.width, choice.height
                )
            })?;
        if got.fourcc != want.fourcc || (got.width, got.height) != (want.width, want.height) {
            bail!(
                "{where_}: asked for {} {}x{}, the driver set {} {}x{}",
                choice.format,
                want.width,
                want.height,
                fourcc_to_string(got.fourcc.repr),
                got.width,
                got.height
            );
        }
        if config.fps > 0 {
            match guarded("setting the frame rate", || {
                device.set_params(&Parameters::with_fps(config.fps))
            }) {
                Ok(p) => log::info!(
                    "{where_}: asked for {} fps, frame interval is {}/{} s",
                    config.fps,
                    p.interval.numerator,
                    p.interval.denominator
                ),
                Err(e) => log::warn!(
                    "{where_}: cannot set {} fps ({e}); using the driver's rate",
                    config.fps
                ),
            }
        }
        let layout = BufferLayout {
            format: choice.format,
            width: got.width,
            height: got.height,
            bytes_per_line: got.stride,
        };
        layout
            .validate()
            .with_context(|| format!("{where_}: unusable format from the driver"))?;
        let stream = Stream::with_buffers(&device, BufType::VideoCapture, BUFFER_COUNT)
            .with_context(|| format!("{where_}: cannot allocate capture buffers"))?;
        Ok(Capture {
            path: path.to_path_buf(),
            card: caps.card,
            layout,
            stream: Some(stream),
            device: Some(device),
            last_frame_at: Instant::now(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}, {} {}x{})",
            self.path.display(),
            self.card,
            self.layout.format,
            self.layout.width,
            self.layout.height
        )
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            release_stream(stream, &self.path);
        }
        if let Some(device) = self.device.take() {
            // Handle::drop unwraps close(2); a failing close must not panic through.
            if catch_unwind(AssertUnwindSafe(move || drop(device))).is_err() {
                log::warn!("{}: closing the device failed", self.path.display());
            }
        }
    }
}

/// Stops and releases a capture stream without letting the v4l crate take
/// the daemon down.
///
/// v4l 0.14 `Stream::drop` calls VIDIOC_STREAMOFF and *panics* on any error
/// other than ENODEV, and the buffer arena's drop does the same for munmap and
/// VIDIOC_REQBUFS(0). A camera that dies with EIO or EPROTO (USB trouble)
/// would therefore panic in drop, and a second panic in the arena's drop
/// during that unwind would abort the process. So: stop the stream ourselves
/// first. If that fails with anything but ENODEV, leak the stream (an fd and a
/// few mmap'd buffers, once per lost camera, logged) instead of dropping it.
/// Otherwise the drop repeats a harmless STREAMOFF; it still runs under
/// `catch_unwind` (release builds use panic = "unwind") in case the arena's
/// release fails.
fn release_stream(mut stream: Stream<'static>, path: &Path) {
    match stream.stop() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(ENODEV) => {}
        Err(e) => {
            log::warn!(
                "{}: stopping the stream failed ({e}); leaking its buffers rather than risking a panic",
                path.display()
            );
            std::mem::forget(stream);
            return;
        }
    }
    if catch_unwind(AssertUnwindSafe(move || drop(stream))).is_err() {
        log::warn!("{}: releasing the capture buffers failed", path.display());
    }
}

/// What reading one buffer gave.
enum Read {
    /// Boxed: a frame header is large next to the other variant.
    Frame(Box<Frame>),
    /// A buffer that cannot be used (error flag, short); counted as dropped.
    Skipped(String),
}

/// A V4L2 camera as a frame source. See the module documentation.
pub struct V4l2Source {
    config: V4l2Config,
    capture: Option<Capture>,
    /// Events to hand out before reading the device again.
    pending: VecDeque<SourceEvent>,
    /// `Offline` has been reported and `Online` not yet.
    offline: bool,
    /// When the next reopen attempt may happen.
    next_attempt: Instant,
    /// Last reopen failure, logged once per distinct message.
    last_open_error: Option<String>,
    timestamps: TimestampMapper,
    sequence: SequenceTracker,
    bad_frames: u32,
    /// Radiometry of the last frame (Y16 auto decides per frame).
    last_radiometric: Option<bool>,
    /// Description of the current (or last) device, for logs.
    description: String,
}

impl V4l2Source {
    /// Opens the configured device now. Fails with a message that names the
    /// device and what it offers when it is missing or cannot be used.
    pub fn open(config: V4l2Config) -> anyhow::Result<V4l2Source> {
        config.validate()?;
        let capture = open_configured(&config)?;
        log::info!("camera {}", capture.describe());
        let mut source = V4l2Source::with_config(config);
        source.description = capture.describe();
        source.capture = Some(capture);
        Ok(source)
    }

    /// Like [`open`](Self::open), but a camera that is not there yet is not an
    /// error: the first event is then `Offline` and the source keeps trying.
    /// Config errors (bad values) still fail here.
    pub(crate) fn open_or_wait(config: V4l2Config) -> anyhow::Result<V4l2Source> {
        config.validate()?;
        let mut source = V4l2Source::with_config(config);
        match open_configured(&source.config) {
            Ok(capture) => {
                log::info!("camera {}", capture.describe());
                source.description = capture.describe();
                source.capture = Some(capture);
            }
            Err(e) => source.go_offline(format!("{e:#}")),
        }
        Ok(source)
    }

    fn with_config(config: V4l2Config) -> V4l2Source {
        V4l2Source {
            description: format!("v4l2 {}", config.device),
            config,
            capture: None,
            pending: VecDeque::new(),
            offline: false,
            next_attempt: Instant::now(),
            last_open_error: None,
            timestamps: TimestampMapper::default(),
            sequence: SequenceTracker::default(),
            bad_frames: 0,
            last_radiometric: None,
        }
    }

    /// The negotiated layout of the open device, if one is open.
    pub fn layout(&self) -> Option<BufferLayout> {
        self.capture.as_ref().map(|c| c.layout)
    }

    /// Closes the device and queues `Offline` (once per outage).
    fn go_offline(&mut self, reason: String) {
        self.capture = None; // Capture::drop releases the stream safely.
        self.next_attempt = Instant::now() + self.config.reopen_interval;
        if !self.offline {
            log::warn!("camera offline: {reason}");
            self.offline = true;
            self.pending
                .push_back(SourceEvent::State(SourceState::Offline { reason }));
        }
    }

    /// One reopen attempt (after waiting for `reopen_interval`).
    fn try_reopen(&mut self) {
        let wait = self.next_attempt.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
        match open_configured(&self.config) {
            Ok(capture) => {
                log::info!("camera reopened: {}", capture.describe());
                self.description = capture.describe();
                self.capture = Some(capture);
                self.sequence.stream_restarted();
                self.last_open_error = None;
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if self.last_open_error.as_ref() != Some(&msg) {
                    log::info!("camera not back yet: {msg}");
                    self.last_open_error = Some(msg);
                }
                self.next_attempt = Instant::now() + self.config.reopen_interval;
            }
        }
    }

    /// How long the stream may be silent before it counts as stalled.
    fn stall_limit(&self, format: PixelFormat) -> Duration {
        let mut limit = self.config.stall_timeout;
        if format == PixelFormat::Tc001 {
            limit += self.config.tc001_calibration_grace;
        }
        limit
    }

    /// Waits for one buffer from the open device and decodes it.
    fn read_one(&mut self) -> Result<Read, String> {
        let format = self.capture.as_ref().ok_or("no device open")?.layout.format;
        let limit = self.stall_limit(format);
        let capture = self.capture.as_mut().ok_or("no device open")?;
        let left = limit.saturating_sub(capture.last_frame_at.elapsed());
        let stream = capture.stream.as_mut().ok_or("no stream")?;
        // The poll timeout is in whole milliseconds; at least 1 so it never blocks forever.
        stream.set_timeout(left.max(Duration::from_millis(1)));
        let (data, meta) = match CaptureStream::next(stream) {
            Ok((data, meta)) => (data, *meta),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(format!(
                    "no frame for {:.1} s (stalled stream)",
                    limit.as_secs_f64()
                ))
            }
            Err(e) if e.raw_os_error() == Some(ENODEV) => {
                return Err(format!(
                    "{}: device gone (unplugged?): {e}",
                    capture.path.display()
                ))
            }
            Err(e) => return Err(format!("{}: read error: {e}", capture.path.display())),
        };
        capture.last_frame_at = Instant::now();
        if meta.flags.contains(BufFlags::ERROR) {
            self.sequence.discard(meta.sequence);
            return Ok(Read::Skipped("driver flagged the buffer as corrupt".into()));
        }
        let used = match meta.bytesused as usize {
            0 => data.len(),
            n => n.min(data.len()),
        };
        let decoded = match formats::decode(&capture.layout, &data[..used], self.config.radiometric)
        {
            Ok(d) => d,
            Err(e) => {
                self.sequence.discard(meta.sequence);
                return Ok(Read::Skipped(e.to_string()));
            }
        };
        let sequence = self.sequence.next(meta.sequence);
        let captured_at = self
            .timestamps
            .capture_time(meta.timestamp.into(), SystemTime::now());
        self.last_radiometric = Some(decoded.radiometry.is_absolute());
        let origin = capture.path.display().to_string();
        // The decoder sizes its output from the validated layout, so the
        // frame builds; were it not to, it is skipped like a corrupt buffer.
        match decoded.into_frame(sequence, captured_at, origin) {
            Ok(frame) => Ok(Read::Frame(Box::new(frame))),
            Err(e) => Ok(Read::Skipped(e.to_string())),
        }
    }
}

/// Opens the configured device: the fixed path, or for `auto` the first
/// `/dev/video*` node that opens and negotiates.
fn open_configured(config: &V4l2Config) -> anyhow::Result<Capture> {
    match &config.device {
        DeviceChoice::Path(path) => Capture::open(path, config),
        DeviceChoice::Auto => {
            let nodes = probe::video_nodes();
            if nodes.is_empty() {
                bail!("no /dev/video* device found: is the camera plugged in? (`pvtherm cameras` lists what is there)");
            }
            let mut reasons = Vec::new();
            for node in nodes {
                match Capture::open(&node, config) {
                    Ok(c) => return Ok(c),
                    Err(e) => reasons.push(format!("{e:#}")),
                }
            }
            bail!(
                "no usable camera among the /dev/video* devices: {}",
                reasons.join("; ")
            )
        }
    }
}

impl FrameSource for V4l2Source {
    fn next_event(&mut self) -> anyhow::Result<SourceEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if self.capture.is_none() {
                self.try_reopen();
                continue;
            }
            match self.read_one() {
                Ok(Read::Frame(frame)) => {
                    let frame = *frame;
                    self.bad_frames = 0;
                    if self.offline {
                        self.offline = false;
                        log::info!("camera online: {}", self.description);
                        self.pending.push_back(SourceEvent::Frame(frame));
                        return Ok(SourceEvent::State(SourceState::Online));
                    }
                    return Ok(SourceEvent::Frame(frame));
                }
                Ok(Read::Skipped(why)) => {
                    self.bad_frames += 1;
                    log::debug!("{}: frame skipped: {why}", self.description);
                    if self.bad_frames >= MAX_CONSECUTIVE_BAD_FRAMES {
                        bail!(
                            "{}: {} frames in a row could not be decoded (last: {why}); check [source.v4l2] format, width and height against `pvtherm cameras`",
                            self.description,
                            self.bad_frames
                        );
                    }
                }
                Err(reason) => self.go_offline(reason),
            }
        }
    }

    fn describe(&self) -> String {
        format!("v4l2 {}", self.description)
    }

    fn is_radiometric(&self) -> bool {
        let format = self
            .capture
            .as_ref()
            .map(|c| c.layout.format)
            .or(match self.config.format {
                FormatChoice::Fixed(f) => Some(f),
                FormatChoice::Auto => None,
            });
        match format {
            Some(PixelFormat::Tc001) => true,
            Some(PixelFormat::Grey | PixelFormat::Yuyv) => false,
            Some(PixelFormat::Y16) | None => match self.config.radiometric {
                RadiometricMode::Yes => true,
                RadiometricMode::No => false,
                RadiometricMode::Auto => self.last_radiometric.unwrap_or(format.is_some()),
            },
        }
    }

    fn dropped_frames(&self) -> u64 {
        self.sequence.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_parsing() {
        let c: V4l2Config = toml::from_str("").unwrap();
        assert_eq!(c, V4l2Config::default());
        let c: V4l2Config = toml::from_str(
            r#"
            device = "/dev/v4l/by-id/usb-GroupGets_PureThermal-video-index0"
            format = "TC001"
            width = 256
            height = 192
            fps = 25
            radiometric = "yes"
            stall_timeout = "3s"
            reopen_interval = "500ms"
            tc001_calibration_grace = 1.0
            "#,
        )
        .unwrap();
        assert_eq!(c.format, FormatChoice::Fixed(PixelFormat::Tc001));
        assert!(
            matches!(c.device, DeviceChoice::Path(ref p) if p.ends_with("usb-GroupGets_PureThermal-video-index0"))
        );
        assert_eq!(c.radiometric, RadiometricMode::Yes);
        c.validate().unwrap();
        // Round trip through TOML.
        let back: V4l2Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = toml::from_str::<V4l2Config>("format = \"MJPG\"").unwrap_err();
        assert!(err.to_string().contains("use auto or one of"), "{err}");
        let err = toml::from_str::<V4l2Config>("fromat = \"Y16\"").unwrap_err();
        assert!(err.to_string().contains("fromat"), "{err}");
        let err = toml::from_str::<V4l2Config>("radiometric = \"maybe\"").unwrap_err();
        assert!(
            err.to_string().contains("radiometric") || err.to_string().contains("maybe"),
            "{err}"
        );
        let err = toml::from_str::<V4l2Config>("stall_timeout = nan").unwrap_err();
        assert!(err.to_string().contains("stall_timeout"), "{err}");
        let c = V4l2Config {
            stall_timeout: Duration::from_millis(10),
            ..V4l2Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("stall_timeout"));
        let c = V4l2Config {
            width: 160,
            ..V4l2Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("width"));
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let config = V4l2Config {
            device: DeviceChoice::Path("/nonexistent/video7".into()),
            ..V4l2Config::default()
        };
        let err = V4l2Source::open(config.clone()).err().unwrap();
        assert!(
            format!("{err:#}").contains("/nonexistent/video7"),
            "{err:#}"
        );
        // Waiting mode: Offline first, no error.
        let mut source = V4l2Source::open_or_wait(config).unwrap();
        match source.next_event().unwrap() {
            SourceEvent::State(SourceState::Offline { reason }) => {
                assert!(reason.contains("/nonexistent/video7"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(source.describe().contains("/nonexistent/video7"));
    }

    #[test]
    fn radiometric_report_follows_format() {
        let mut s = V4l2Source::with_config(V4l2Config {
            format: FormatChoice::Fixed(PixelFormat::Grey),
            radiometric: RadiometricMode::Yes,
            ..V4l2Config::default()
        });
        assert!(!s.is_radiometric());
        s.config.format = FormatChoice::Fixed(PixelFormat::Tc001);
        assert!(s.is_radiometric());
        s.config.format = FormatChoice::Fixed(PixelFormat::Y16);
        s.config.radiometric = RadiometricMode::Auto;
        assert!(s.is_radiometric());
        s.last_radiometric = Some(false);
        assert!(!s.is_radiometric());
    }
}
