//! Format negotiation as a pure function of what a device offers, so the
//! rules (`auto` prefers radiometric Y16, then the TC001 layout, then GREY,
//! then YUYV) are unit-tested without a camera.

use std::fmt;

use serde::Serialize;

use crate::formats::{PixelFormat, TC001_HEIGHT, TC001_WIDTH};

/// Size the negotiation aims for when the device sizes are a continuous or
/// stepwise range and the config does not name one.
const DEFAULT_RANGE_SIZE: (u32, u32) = (640, 480);

/// Frame sizes a device offers for one pixel format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SizeOffer {
    /// One fixed size (what USB cameras announce).
    Discrete { width: u32, height: u32 },
    /// Any size in a range, in steps (virtual and some CSI devices).
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
    },
}

impl SizeOffer {
    /// Whether `width` x `height` is one of the sizes this offer covers.
    pub(crate) fn contains(&self, width: u32, height: u32) -> bool {
        match *self {
            SizeOffer::Discrete {
                width: w,
                height: h,
            } => (w, h) == (width, height),
            SizeOffer::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => {
                let on_step =
                    |v: u32, min: u32, step: u32| step <= 1 || (v - min).is_multiple_of(step);
                (min_width..=max_width).contains(&width)
                    && (min_height..=max_height).contains(&height)
                    && on_step(width, min_width, step_width)
                    && on_step(height, min_height, step_height)
            }
        }
    }

    /// The size to use from this offer when the config names none: the
    /// discrete size itself, or a range's size nearest to 640x480.
    fn default_size(&self) -> (u32, u32) {
        match *self {
            SizeOffer::Discrete { width, height } => (width, height),
            SizeOffer::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => {
                let snap = |want: u32, min: u32, max: u32, step: u32| {
                    let v = want.clamp(min, max);
                    let step = step.max(1);
                    min + (v - min) / step * step
                };
                (
                    snap(DEFAULT_RANGE_SIZE.0, min_width, max_width, step_width),
                    snap(DEFAULT_RANGE_SIZE.1, min_height, max_height, step_height),
                )
            }
        }
    }
}

impl fmt::Display for SizeOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeOffer::Discrete { width, height } => write!(f, "{width}x{height}"),
            SizeOffer::Stepwise {
                min_width,
                max_width,
                min_height,
                max_height,
                ..
            } => write!(f, "{min_width}x{min_height}..{max_width}x{max_height}"),
        }
    }
}

/// One pixel format a device offers, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOffer {
    /// V4L2 fourcc, e.g. `*b"Y16 "`.
    pub(crate) fourcc: [u8; 4],
    /// The driver's description ("16-bit Greyscale").
    pub(crate) description: String,
    /// Frame sizes offered for this format.
    pub(crate) sizes: Vec<SizeOffer>,
}

impl FormatOffer {
    /// The fourcc as text, trailing spaces trimmed ("Y16", "YUYV").
    pub(crate) fn fourcc_str(&self) -> String {
        fourcc_to_string(self.fourcc)
    }

    /// Whether the offer has `width` x `height`.
    pub(crate) fn offers_size(&self, width: u32, height: u32) -> bool {
        self.sizes.iter().any(|s| s.contains(width, height))
    }

    /// Whether the offer announces exactly `width` x `height` as a discrete size.
    fn offers_discrete(&self, width: u32, height: u32) -> bool {
        self.sizes.contains(&SizeOffer::Discrete { width, height })
    }
}

/// A fourcc as readable text (non-printable bytes as `?`), trailing spaces trimmed.
pub fn fourcc_to_string(fourcc: [u8; 4]) -> String {
    fourcc
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// The format and size to request (config `format`, `width`, `height`;
/// 0 means "whatever fits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// A fixed layout, or `None` for `auto`.
    pub(crate) format: Option<PixelFormat>,
    /// Requested width, 0 = any.
    pub(crate) width: u32,
    /// Requested height, 0 = any.
    pub(crate) height: u32,
}

/// The outcome of negotiation: what to ask the driver for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Layout to decode.
    pub(crate) format: PixelFormat,
    /// Device frame width (TC001: 256).
    pub(crate) width: u32,
    /// Device frame height (TC001: 384, both halves).
    pub(crate) height: u32,
}

/// Picks the first usable format in preference order. The error message
/// says what was asked and lists everything the device offers.
pub(crate) fn choose(offers: &[FormatOffer], request: Request) -> Result<Choice, String> {
    let candidates: &[PixelFormat] = match &request.format {
        Some(f) => std::slice::from_ref(f),
        None => &PixelFormat::PREFERENCE,
    };
    for &format in candidates {
        let explicit = request.format.is_some();
        if let Some(choice) = offers
            .iter()
            .filter(|o| o.fourcc == format.fourcc())
            .find_map(|o| choose_size(o, format, request, explicit))
        {
            return Ok(choice);
        }
    }
    Err(format!(
        "the device cannot deliver {}; it offers: {}",
        describe_request(request),
        describe_offers(offers)
    ))
}

/// The size to use for `format` from one offer, if any fits the request.
fn choose_size(
    offer: &FormatOffer,
    format: PixelFormat,
    request: Request,
    explicit: bool,
) -> Option<Choice> {
    let (width, height) = match format.required_device_size() {
        Some((w, h)) => {
            // TC001 is YUYV at exactly 256x384. Under `auto` only a discrete
            // announcement counts (a device with a size range is not a TC001);
            // the config may name the device size or the thermal half's size.
            let size_ok = [(0, 0), (w, h), (w, h / 2)].contains(&(request.width, request.height));
            let offered = if explicit {
                offer.offers_size(w, h)
            } else {
                offer.offers_discrete(w, h)
            };
            if !(size_ok && offered) {
                return None;
            }
            (w, h)
        }
        None if request.width != 0 || request.height != 0 => {
            if !offer.offers_size(request.width, request.height) {
                return None;
            }
            (request.width, request.height)
        }
        None => offer.sizes.first()?.default_size(),
    };
    Some(Choice {
        format,
        width,
        height,
    })
}

fn describe_request(request: Request) -> String {
    let format = request.format.map_or(
        "any usable format (Y16, TC001, GREY, YUYV)".to_string(),
        |f| match f {
            PixelFormat::Tc001 => {
                format!("TC001 (YUYV {TC001_WIDTH}x{TC001_HEIGHT})")
            }
            other => other.name().to_string(),
        },
    );
    if request.width == 0 && request.height == 0 {
        format
    } else {
        format!("{format} at {}x{}", request.width, request.height)
    }
}

/// "Y16 160x120; YUYV 256x384, 640x480" — for error messages and logs.
pub fn describe_offers(offers: &[FormatOffer]) -> String {
    if offers.is_empty() {
        return "no capture formats".to_string();
    }
    offers
        .iter()
        .map(|o| {
            let sizes: Vec<String> = o.sizes.iter().map(|s| s.to_string()).collect();
            if sizes.is_empty() {
                o.fourcc_str()
            } else {
                format!("{} {}", o.fourcc_str(), sizes.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discrete(fourcc: &[u8; 4], sizes: &[(u32, u32)]) -> FormatOffer {
        FormatOffer {
            fourcc: *fourcc,
            description: String::new(),
            sizes: sizes
                .iter()
                .map(|&(width, height)| SizeOffer::Discrete { width, height })
                .collect(),
        }
    }

    fn auto() -> Request {
        Request {
            format: None,
            width: 0,
            height: 0,
        }
    }

    fn purethermal() -> Vec<FormatOffer> {
        vec![
            discrete(b"UYVY", &[(160, 120)]),
            discrete(b"Y16 ", &[(160, 120)]),
            discrete(b"GREY", &[(160, 120)]),
            discrete(b"RGBP", &[(160, 120)]),
        ]
    }

    fn tc001() -> Vec<FormatOffer> {
        vec![discrete(b"YUYV", &[(256, 192), (256, 384)])]
    }

    #[test]
    fn auto_prefers_y16() {
        let c = choose(&purethermal(), auto()).unwrap();
        assert_eq!((c.format, c.width, c.height), (PixelFormat::Y16, 160, 120));
    }

    #[test]
    fn auto_finds_tc001_layout() {
        let c = choose(&tc001(), auto()).unwrap();
        assert_eq!(
            (c.format, c.width, c.height),
            (PixelFormat::Tc001, 256, 384)
        );
        // The thermal half's size in the config is understood as well.
        let req = Request {
            format: Some(PixelFormat::Tc001),
            width: 256,
            height: 192,
        };
        assert_eq!(choose(&tc001(), req).unwrap().height, 384);
    }

    #[test]
    fn auto_falls_back_to_grey_then_yuyv() {
        let offers = vec![
            discrete(b"MJPG", &[(640, 480)]),
            discrete(b"YUYV", &[(640, 480), (320, 240)]),
            discrete(b"GREY", &[(320, 240)]),
        ];
        let c = choose(&offers, auto()).unwrap();
        assert_eq!((c.format, c.width, c.height), (PixelFormat::Grey, 320, 240));
        let c = choose(&offers[..2], auto()).unwrap();
        assert_eq!((c.format, c.width, c.height), (PixelFormat::Yuyv, 640, 480));
    }

    #[test]
    fn requested_size_must_be_offered() {
        let req = Request {
            format: Some(PixelFormat::Yuyv),
            width: 320,
            height: 240,
        };
        let offers = vec![discrete(b"YUYV", &[(640, 480), (320, 240)])];
        assert_eq!(choose(&offers, req).unwrap().width, 320);
        let req = Request {
            width: 1024,
            height: 768,
            ..req
        };
        let err = choose(&offers, req).unwrap_err();
        assert!(err.contains("YUYV at 1024x768"), "{err}");
        assert!(err.contains("YUYV 640x480, 320x240"), "{err}");
    }

    #[test]
    fn missing_format_lists_offers() {
        let req = Request {
            format: Some(PixelFormat::Y16),
            width: 0,
            height: 0,
        };
        let err = choose(&tc001(), req).unwrap_err();
        assert_eq!(
            err,
            "the device cannot deliver Y16; it offers: YUYV 256x192, 256x384"
        );
        let err = choose(&[discrete(b"MJPG", &[(1280, 720)])], auto()).unwrap_err();
        assert!(err.contains("any usable format") && err.contains("MJPG 1280x720"));
        assert!(choose(&[], auto())
            .unwrap_err()
            .contains("no capture formats"));
    }

    #[test]
    fn stepwise_ranges() {
        let range = SizeOffer::Stepwise {
            min_width: 16,
            max_width: 4096,
            step_width: 2,
            min_height: 16,
            max_height: 2160,
            step_height: 2,
        };
        assert!(range.contains(160, 120));
        assert!(!range.contains(161, 120));
        assert!(!range.contains(8, 120));
        let offers = vec![FormatOffer {
            fourcc: *b"YUYV",
            description: String::new(),
            sizes: vec![range.clone()],
        }];
        // A size range is not a TC001 under auto ...
        let c = choose(&offers, auto()).unwrap();
        assert_eq!((c.format, c.width, c.height), (PixelFormat::Yuyv, 640, 480));
        // ... but may be asked for explicitly.
        let req = Request {
            format: Some(PixelFormat::Tc001),
            width: 0,
            height: 0,
        };
        assert_eq!(choose(&offers, req).unwrap().format, PixelFormat::Tc001);
    }

    #[test]
    fn fourcc_text() {
        assert_eq!(fourcc_to_string(*b"Y16 "), "Y16");
        assert_eq!(fourcc_to_string([b'A', 0, b'B', 1]), "A?B?");
    }
}
