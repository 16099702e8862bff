//! Finding and describing V4L2 devices: the `/dev/video*` scan used by
//! `device = "auto"`, the format offers used by negotiation, and the full
//! description printed by `pvtherm cameras`.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::Serialize;
use v4l::capability::Flags as CapFlags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::negotiate::{fourcc_to_string, FormatOffer, SizeOffer};
use crate::formats::{PixelFormat, TC001_HEIGHT, TC001_WIDTH};

/// Runs a v4l crate call, turning a panic inside it into an error.
///
/// The v4l crate 0.14 panics on some unexpected driver data (`unwrap` on a
/// non-UTF-8 card name, `expect` on an unknown colorspace, field order or
/// frame-size type). A quirky camera must give an error, not kill the daemon.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(io::Error::other(format!(
            "{what}: the v4l library rejected the driver's answer ({msg})"
        )))
    })
}

/// The `/dev/video<N>` nodes present now, in numeric order.
pub fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_prefix("video")?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, path)| path).collect()
}

/// Whether the node is a video capture device that supports streaming I/O
/// (UVC cameras also create metadata nodes that pvtherm must skip).
pub(crate) fn can_stream_video(caps: &v4l::Capabilities) -> bool {
    caps.capabilities
        .contains(CapFlags::VIDEO_CAPTURE | CapFlags::STREAMING)
}

/// The capture formats and sizes the device offers.
pub(crate) fn query_offers(dev: &Device) -> io::Result<Vec<FormatOffer>> {
    let formats = guarded("listing formats", || dev.enum_formats())?;
    let mut offers = Vec::with_capacity(formats.len());
    for f in formats {
        let sizes = guarded("listing frame sizes", || dev.enum_framesizes(f.fourcc))
            .unwrap_or_default()
            .into_iter()
            .map(|s| size_offer(s.size))
            .collect();
        offers.push(FormatOffer {
            fourcc: f.fourcc.repr,
            description: f.description,
            sizes,
        });
    }
    Ok(offers)
}

fn size_offer(size: FrameSizeEnum) -> SizeOffer {
    match size {
        FrameSizeEnum::Discrete(d) => SizeOffer::Discrete {
            width: d.width,
            height: d.height,
        },
        FrameSizeEnum::Stepwise(s) => SizeOffer::Stepwise {
            min_width: s.min_width,
            max_width: s.max_width,
            step_width: s.step_width,
            min_height: s.min_height,
            max_height: s.max_height,
            step_height: s.step_height,
        },
    }
}

/// How pvtherm can use a format at a given size, for `pvtherm cameras`.
pub(crate) fn usage(fourcc: [u8; 4], width: u32, height: u32) -> Option<&'static str> {
    match &fourcc {
        b"Y16 " => {
            Some("radiometric Y16 (centi-kelvin with TLinear on; AGC/raw counts read as relative)")
        }
        b"YUYV" if (width, height) == (TC001_WIDTH, TC001_HEIGHT) => {
            Some("TC001 radiometric (lower half = 1/64 K temperature plane)")
        }
        b"GREY" => Some("8-bit, not radiometric"),
        b"YUYV" => Some("8-bit luma, not radiometric"),
        _ => None,
    }
}

/// Everything `pvtherm cameras` prints about one device node.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// Device node, e.g. `/dev/video0`.
    pub path: PathBuf,
    /// Driver name (`uvcvideo`, `vivid`).
    pub driver: String,
    /// Card name (the camera model as the driver knows it).
    pub card: String,
    /// Bus (`usb-0000:01:00.0-1.2`), useful to tell two identical cameras apart.
    pub bus: String,
    /// Driver version.
    pub version: String,
    /// Capability names of this node (VIDEO_CAPTURE, STREAMING, ...).
    pub capabilities: Vec<String>,
    /// Whether pvtherm can capture from this node at all.
    pub usable: bool,
    /// The format pvtherm's `format = "auto"` would pick, e.g. `Y16 160x120`.
    pub auto_choice: Option<String>,
    /// Capture formats with sizes and frame intervals.
    pub formats: Vec<FormatInfo>,
    /// Why the node could not be (fully) queried, if it could not.
    pub error: Option<String>,
}

/// One capture format of a device.
#[derive(Debug, Clone, Serialize)]
pub struct FormatInfo {
    /// Fourcc, trailing spaces trimmed (`Y16`, `YUYV`).
    pub fourcc: String,
    /// Driver description (`16-bit Greyscale`).
    pub description: String,
    /// pvtherm's name for the layout when the format is usable (`Y16`, `GREY`, `YUYV`).
    pub pvtherm_format: Option<PixelFormat>,
    /// Sizes with their frame intervals and how pvtherm would use them.
    pub sizes: Vec<SizeInfo>,
}

/// One frame size of a format.
#[derive(Debug, Clone, Serialize)]
pub struct SizeInfo {
    /// The size (discrete or a range).
    #[serde(flatten)]
    pub size: SizeOffer,
    /// Frame intervals as `num/den` seconds (`1/9` = 9 fps); empty for ranges.
    pub intervals: Vec<String>,
    /// How pvtherm can use this format at this size, if at all.
    pub usage: Option<&'static str>,
}

/// Describes the node at `path`. Never fails: problems go to `error`, so one
/// broken node does not hide the others.
pub fn describe_device(path: &Path) -> DeviceInfo {
    let mut info = DeviceInfo {
        path: path.to_path_buf(),
        driver: String::new(),
        card: String::new(),
        bus: String::new(),
        version: String::new(),
        capabilities: Vec::new(),
        usable: false,
        auto_choice: None,
        formats: Vec::new(),
        error: None,
    };
    if let Err(e) = fill_device_info(path, &mut info) {
        info.error = Some(e.to_string());
    }
    info
}

fn fill_device_info(path: &Path, info: &mut DeviceInfo) -> io::Result<()> {
    let dev = Device::with_path(path)?;
    let caps = guarded("querying capabilities", || dev.query_caps())?;
    info.driver = caps.driver.clone();
    info.card = caps.card.clone();
    info.bus = caps.bus.clone();
    info.version = format!("{}.{}.{}", caps.version.0, caps.version.1, caps.version.2);
    info.capabilities = format!("{:?}", caps.capabilities)
        .split(" | ")
        .map(str::to_string)
        .collect();
    if !can_stream_video(&caps) {
        info.error = Some("not a streaming video capture node (metadata or output node?)".into());
        return Ok(());
    }
    let offers = query_offers(&dev)?;
    info.auto_choice = super::negotiate::choose(
        &offers,
        super::negotiate::Request {
            format: None,
            width: 0,
            height: 0,
        },
    )
    .ok()
    .map(|c| format!("{} {}x{}", c.format, c.width, c.height));
    info.usable = info.auto_choice.is_some();
    info.formats = offers
        .iter()
        .map(|offer| format_info(&dev, offer))
        .collect();
    Ok(())
}

fn format_info(dev: &Device, offer: &FormatOffer) -> FormatInfo {
    let pvtherm_format = PixelFormat::PREFERENCE
        .into_iter()
        .filter(|f| *f != PixelFormat::Tc001)
        .find(|f| f.fourcc() == offer.fourcc);
    let sizes = offer
        .sizes
        .iter()
        .map(|size| {
            let (intervals, usage) = match *size {
                SizeOffer::Discrete { width, height } => (
                    frame_intervals(dev, offer.fourcc, width, height),
                    usage(offer.fourcc, width, height),
                ),
                SizeOffer::Stepwise { .. } => (Vec::new(), usage(offer.fourcc, 0, 0)),
            };
            SizeInfo {
                size: size.clone(),
                intervals,
                usage,
            }
        })
        .collect();
    FormatInfo {
        fourcc: fourcc_to_string(offer.fourcc),
        description: offer.description.clone(),
        pvtherm_format,
        sizes,
    }
}

/// Frame intervals at one size as `num/den` strings (empty if the driver
/// does not say).
fn frame_intervals(dev: &Device, fourcc: [u8; 4], width: u32, height: u32) -> Vec<String> {
    guarded("listing frame intervals", || {
        dev.enum_frameintervals(FourCC { repr: fourcc }, width, height)
    })
    .unwrap_or_default()
    .into_iter()
    .map(|i| match i.interval {
        FrameIntervalEnum::Discrete(f) => format!("{}/{}", f.numerator, f.denominator),
        FrameIntervalEnum::Stepwise(s) => format!(
            "{}/{}..{}/{}",
            s.min.numerator, s.min.denominator, s.max.numerator, s.max.denominator
        ),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_marks_radiometric_formats() {
        assert!(usage(*b"Y16 ", 160, 120)
            .unwrap()
            .starts_with("radiometric Y16"));
        assert!(usage(*b"YUYV", 256, 384).unwrap().starts_with("TC001"));
        assert!(usage(*b"YUYV", 640, 480)
            .unwrap()
            .contains("not radiometric"));
        assert!(usage(*b"GREY", 320, 240)
            .unwrap()
            .contains("not radiometric"));
        assert_eq!(usage(*b"MJPG", 640, 480), None);
    }

    #[test]
    fn guarded_turns_panics_into_errors() {
        let err = guarded::<()>("querying", || panic!("bad utf-8")).unwrap_err();
        assert!(err.to_string().contains("querying") && err.to_string().contains("bad utf-8"));
        assert_eq!(guarded("ok", || Ok(3)).unwrap(), 3);
    }

    #[test]
    fn no_device_no_panic() {
        let info = describe_device(Path::new("/nonexistent/video9"));
        assert!(!info.usable);
        assert!(info.error.is_some());
    }
}
