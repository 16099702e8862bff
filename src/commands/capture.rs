//! `pvtherm capture`: grab frames from a V4L2 camera through the same source
//! the daemon uses, print what arrives (size, sequence, timestamp, min/max,
//! spot values, camera lost/back) and optionally save raw frames plus a PGM
//! preview. An operator's debugging tool, and what the VM test drives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use pvtherm::formats::RadiometricMode;
use pvtherm::frame::{Frame, Pixels};
use pvtherm::source::v4l2::{DeviceChoice, FormatChoice, V4l2Config, V4l2Source};
use pvtherm::source::{FrameSource, SourceEvent, SourceState};

/// Arguments of `pvtherm capture`.
#[derive(clap::Args, Debug)]
pub(crate) struct CaptureArgs {
    /// Device node (e.g. /dev/video0) or `auto` = the first usable camera.
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    /// Pixel format: auto, Y16, TC001, GREY or YUYV.
    #[arg(long, default_value = "auto")]
    pub(crate) format: String,
    /// Frame width (0 = the device's size for the format).
    #[arg(long, default_value_t = 0)]
    pub(crate) width: u32,
    /// Frame height (0 = the device's size for the format).
    #[arg(long, default_value_t = 0)]
    pub(crate) height: u32,
    /// Frames per second to request (0 = driver default).
    #[arg(long, default_value_t = 0)]
    pub(crate) fps: u32,
    /// Whether Y16 is centi-kelvin: auto, yes or no.
    #[arg(long, default_value = "auto")]
    pub(crate) radiometric: String,
    /// Number of frames to capture.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub(crate) frames: u64,
    /// Capture for this many seconds instead (frame count ignored); a camera
    /// that is lost and comes back is reported and survived.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Save each frame to this folder: raw `frame-N.WxH.y16` (u16 LE) or
    /// `frame-N.WxH.gray` (8-bit), plus a contrast-stretched `frame-N.pgm`.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print the pixel value at X,Y of each frame (repeatable), e.g. --spot 80,60.
    #[arg(long = "spot", value_parser = parse_spot)]
    pub(crate) spots: Vec<(u32, u32)>,
    /// Time without a frame before the camera counts as lost ("2s", "500ms"
    /// or plain seconds).
    #[arg(long, value_parser = pvtherm::config_value::parse_duration_arg)]
    pub(crate) stall_timeout: Option<std::time::Duration>,
    /// Time between reopen attempts of a lost camera ("2s", "500ms" or plain
    /// seconds).
    #[arg(long, value_parser = pvtherm::config_value::parse_duration_arg)]
    pub(crate) reopen_interval: Option<std::time::Duration>,
    /// Fail unless the camera went offline, came back online and delivered
    /// frames again during --duration (a recovery test).
    #[arg(long, requires = "duration")]
    pub(crate) expect_reconnect: bool,
    /// One JSON object per line (events and a final summary) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_spot(s: &str) -> Result<(u32, u32), String> {
    let (x, y) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected X,Y"))?;
    let parse = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    Ok((parse(x)?, parse(y)?))
}

impl CaptureArgs {
    fn source_config(&self) -> anyhow::Result<V4l2Config> {
        let mut config = V4l2Config {
            device: self
                .device
                .parse::<DeviceChoice>()
                .map_err(anyhow::Error::msg)?,
            format: self
                .format
                .parse::<FormatChoice>()
                .map_err(anyhow::Error::msg)?,
            width: self.width,
            height: self.height,
            fps: self.fps,
            radiometric: self
                .radiometric
                .parse::<RadiometricMode>()
                .map_err(anyhow::Error::msg)?,
            ..V4l2Config::default()
        };
        if let Some(s) = self.stall_timeout {
            config.stall_timeout = s;
        }
        if let Some(s) = self.reopen_interval {
            config.reopen_interval = s;
        }
        config.validate()?;
        Ok(config)
    }
}

/// What happened during a capture, for the summary and `--expect-reconnect`.
#[derive(Debug, Default)]
struct Tally {
    frames: u64,
    offline: u64,
    online: u64,
    frames_after_online: u64,
}

/// Entry point of `pvtherm capture`.
pub(crate) fn run(args: CaptureArgs) -> anyhow::Result<()> {
    let config = args.source_config()?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    }
    let source = V4l2Source::open(config)?;
    let layout = source.layout();
    let description = source.describe();
    if args.json {
        let layout = layout.map(|l| json!({"format": l.format, "width": l.width, "height": l.height, "bytes_per_line": l.bytes_per_line}));
        emit(&json!({"event": "opened", "source": description, "layout": layout}));
    } else {
        println!("capturing from {description}");
    }

    // The source blocks (waiting for frames, or for a lost camera to come
    // back), so it runs on its own thread as in the daemon; the deadline is
    // kept here.
    let (tx, rx) = mpsc::sync_channel::<(anyhow::Result<SourceEvent>, u64)>(8);
    let mut source: Box<dyn FrameSource> = Box::new(source);
    std::thread::Builder::new()
        .name("v4l2-capture".into())
        .spawn(move || loop {
            let event = source.next_event();
            let fatal = event.is_err();
            if tx.send((event, source.dropped_frames())).is_err() || fatal {
                break;
            }
        })
        .context("cannot start the capture thread")?;

    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO));
    let mut tally = Tally::default();
    let mut dropped = 0;
    loop {
        if deadline.is_none() && tally.frames >= args.frames {
            break;
        }
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => break,
            },
            None => Duration::from_secs(3600),
        };
        let (event, dropped_now) = match rx.recv_timeout(wait) {
            Ok(got) => got,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the capture thread stopped"),
        };
        dropped = dropped_now;
        match event? {
            SourceEvent::Frame(frame) => {
                tally.frames += 1;
                if tally.online > 0 {
                    tally.frames_after_online += 1;
                }
                let file = match &args.out {
                    Some(dir) => Some(save_frame(dir, &frame)?),
                    None => None,
                };
                report_frame(&frame, &args.spots, file.as_deref(), args.json);
            }
            SourceEvent::State(state) => {
                match &state {
                    SourceState::Offline { .. } => tally.offline += 1,
                    SourceState::Online => tally.online += 1,
                }
                report_state(&state, args.json);
            }
            SourceEvent::End => break,
        }
    }

    if args.json {
        emit(
            &json!({"event": "summary", "frames": tally.frames, "dropped": dropped,
            "offline": tally.offline, "online": tally.online,
            "frames_after_online": tally.frames_after_online}),
        );
    } else {
        println!(
            "{} frames, {dropped} dropped, camera lost {} time(s), back {} time(s)",
            tally.frames, tally.offline, tally.online
        );
    }
    if args.expect_reconnect
        && (tally.offline == 0 || tally.online == 0 || tally.frames_after_online == 0)
    {
        bail!(
            "expected the camera to go offline and come back with frames: offline {} time(s), online {} time(s), {} frame(s) after",
            tally.offline,
            tally.online,
            tally.frames_after_online
        );
    }
    if deadline.is_none() && tally.frames < args.frames {
        bail!("only {} of {} frames arrived", tally.frames, args.frames);
    }
    Ok(())
}

fn emit(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (pipe to `head`) is not worth a panic.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn report_state(state: &SourceState, json: bool) {
    match (state, json) {
        (SourceState::Online, true) => emit(&json!({"event": "state", "state": "online"})),
        (SourceState::Offline { reason }, true) => {
            emit(&json!({"event": "state", "state": "offline", "reason": reason}))
        }
        (SourceState::Online, false) => println!("camera online"),
        (SourceState::Offline { reason }, false) => println!("camera offline: {reason}"),
    }
}

fn report_frame(frame: &Frame, spots: &[(u32, u32)], file: Option<&Path>, json: bool) {
    let (min, max) = min_max(frame.pixels());
    let time = humantime::format_rfc3339_millis(frame.captured_at).to_string();
    let spot_values: Vec<(u32, u32, Option<u16>)> = spots
        .iter()
        .map(|&(x, y)| {
            let value = (x < frame.width() && y < frame.height()).then(|| {
                frame
                    .pixels()
                    .get(y as usize * frame.width() as usize + x as usize)
            });
            (x, y, value)
        })
        .collect();
    let bits = match frame.pixels() {
        Pixels::Gray8(_) => 8,
        Pixels::Gray16(_) => 16,
    };
    if json {
        let spots: Vec<_> = spot_values
            .iter()
            .map(|&(x, y, v)| json!({"x": x, "y": y, "value": v, "celsius": v.and_then(|v| frame.radiometry.to_celsius(v))}))
            .collect();
        emit(&json!({
            "event": "frame", "sequence": frame.sequence, "width": frame.width(),
            "height": frame.height(), "bits": bits, "captured_at": time,
            "min": min, "max": max, "radiometric": frame.radiometry.is_absolute(),
            "min_celsius": frame.radiometry.to_celsius(min),
            "max_celsius": frame.radiometry.to_celsius(max),
            "spots": spots, "file": file,
        }));
        return;
    }
    let mut line = format!(
        "frame {} {}x{} {bits}-bit {time} min {min} max {max}",
        frame.sequence,
        frame.width(),
        frame.height()
    );
    if let (Some(lo), Some(hi)) = (
        frame.radiometry.to_celsius(min),
        frame.radiometry.to_celsius(max),
    ) {
        line += &format!(" ({lo:.2}..{hi:.2} °C)");
    }
    for (x, y, v) in spot_values {
        match v {
            Some(v) => line += &format!(" spot {x},{y}={v}"),
            None => line += &format!(" spot {x},{y}=outside"),
        }
    }
    if let Some(f) = file {
        line += &format!(" -> {}", f.display());
    }
    println!("{line}");
}

fn min_max(pixels: &Pixels) -> (u16, u16) {
    (0..pixels.len())
        .map(|i| pixels.get(i))
        .fold((u16::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Writes the raw frame and a PGM preview; returns the raw file's path.
fn save_frame(dir: &Path, frame: &Frame) -> anyhow::Result<PathBuf> {
    let stem = format!("frame-{:06}", frame.sequence);
    let (raw_name, raw): (String, Vec<u8>) = match frame.pixels() {
        Pixels::Gray16(v) => (
            format!("{stem}.{}x{}.y16", frame.width(), frame.height()),
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        Pixels::Gray8(v) => (
            format!("{stem}.{}x{}.gray", frame.width(), frame.height()),
            v.clone(),
        ),
    };
    let raw_path = dir.join(raw_name);
    std::fs::write(&raw_path, raw)
        .with_context(|| format!("cannot write {}", raw_path.display()))?;
    let pgm_path = dir.join(format!("{stem}.pgm"));
    std::fs::write(&pgm_path, pgm_preview(frame))
        .with_context(|| format!("cannot write {}", pgm_path.display()))?;
    Ok(raw_path)
}

/// An 8-bit binary PGM of the frame, stretched from its min to its max so a
/// 16-bit thermal frame is visible in any image viewer.
fn pgm_preview(frame: &Frame) -> Vec<u8> {
    let (min, max) = min_max(frame.pixels());
    let range = u32::from(max.saturating_sub(min)).max(1);
    let mut out = format!("P5\n{} {}\n255\n", frame.width(), frame.height()).into_bytes();
    out.extend((0..frame.pixels().len()).map(|i| match frame.pixels() {
        Pixels::Gray8(v) => v[i],
        Pixels::Gray16(_) => (u32::from(frame.pixels().get(i) - min) * 255 / range) as u8,
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvtherm::radiometry::Radiometry;
    use std::time::SystemTime;

    fn frame(pixels: Pixels, w: u32, h: u32) -> Frame {
        Frame::new(
            w,
            h,
            pixels,
            Radiometry::Relative,
            3,
            SystemTime::UNIX_EPOCH,
            "test".into(),
        )
        .unwrap()
    }

    #[test]
    fn spots_parse() {
        assert_eq!(parse_spot("80,60").unwrap(), (80, 60));
        assert!(parse_spot("80").is_err());
        assert!(parse_spot("a,1").is_err());
    }

    #[test]
    fn pgm_preview_stretches_16_bit() {
        let f = frame(Pixels::Gray16(vec![1000, 1500, 2000, 1000]), 2, 2);
        let pgm = pgm_preview(&f);
        assert!(pgm.starts_with(b"P5\n2 2\n255\n"));
        assert_eq!(&pgm[pgm.len() - 4..], &[0, 127, 255, 0]);
        let f = frame(Pixels::Gray8(vec![7, 7, 7]), 3, 1);
        assert_eq!(&pgm_preview(&f)[pgm_preview(&f).len() - 3..], &[7, 7, 7]);
    }

    #[test]
    fn saved_y16_has_replayable_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = frame(Pixels::Gray16(vec![0x1234, 2, 3, 4, 5, 6]), 3, 2);
        let path = save_frame(dir.path(), &f).unwrap();
        assert!(path.ends_with("frame-000003.3x2.y16"), "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..2], &[0x34, 0x12]);
        assert!(dir.path().join("frame-000003.pgm").exists());
    }
}
