//! DJI's own thermal R-JPEG (Zenmuse H20T, Matrice 30T, Mavic 3T, Mavic 2
//! Enterprise Advanced, Zenmuse XT S, ...): the raw thermal plane and the
//! measurement parameters, never the false-colour picture the JPEG shows.
//!
//! # Container (public: exiftool's `DJI.pm` / `ExifTool.pm`, exiftool forum
//! topic 11401, checked on the files in `tests/fixtures/dji/`)
//!
//! - The raw plane: little-endian u16, one value per pixel, row-major, split
//!   over consecutive APP3 segments (10 x 65,532 + 40 bytes for 640x512). Its
//!   size is that of the sensor, which can differ from the JPEG's (the M30T
//!   writes a 1280x1024 picture over a 640x512 plane). The Zenmuse XT S puts
//!   the plane in APP4 segments and a 32 KiB table in APP3 instead.
//! - The measurement parameters in APP4, in one of three layouts:
//!   - [`Layout::H20t`] (exiftool `ThermalParams`, Zenmuse H20T): magic
//!     `AA 55 12 06` at 0; u16 at 0x44 object distance (m), 0x46 relative
//!     humidity (%), 0x48 emissivity (%), 0x4A reflected temperature (0.1 C;
//!     DJI's SDK reports 23 for the stored 230), 0x4C ambient temperature (C).
//!   - [`Layout::Float`] (exiftool `ThermalParams2`, Mavic 3T, Matrice 30T,
//!     H20N, Mavic 2 Enterprise Advanced): five f32 at a base offset (0, or 32
//!     after an `FF D2 D1 FF iirp` header): ambient (C), distance (m),
//!     emissivity, humidity (0..1), reflected temperature (C); recognised by
//!     the bytes `2C 01 20 00` 32 bytes after the base.
//!   - [`Layout::Short`] (exiftool `ThermalParams3`, some M30T firmware):
//!     magic `AA 55 38 00` at 32; u16 at +4 humidity (%), +6 distance (0.1 m),
//!     +8 emissivity (0.01), +10 reflected temperature (0.1 C).
//!   - [`Layout::None`]: no parameter block (Zenmuse XT S).
//! - APP5 (or APP3 on the XT S) holds a calibration table whose format is not
//!   public; it is not used.
//!
//! # What the raw values mean, per model
//!
//! DJI's conversion to temperature is its closed Thermal SDK (x86 only). What
//! is public:
//! - Zenmuse H20T, Matrice 30T, Mavic 3T, Mavic 2 Enterprise Advanced: the raw
//!   value is kelvin x 64 before DJI's corrections. OpenDroneMap's maintainer
//!   (exiftool forum topic 11401, 2024): "to get the raw, uncorrected Celsius
//!   values ... celsius = ((raw >> 2) * 0.0625) - 273.15" (that is raw / 64 -
//!   273.15 with the two low bits dropped), and "DJI applies some sort of
//!   correction based on temperature, distance, emissivity and humidity"; a
//!   user there reports "irregular differences" against the SDK. On the
//!   fixtures it gives plausible scenes: H20T 10..47 C (median 19, ambient
//!   21), M3T 25..45 C, and in the data set M30T 15..24 C, M2EA -4..40 C.
//!   So pvtherm reports a linear 1/64 K per count scale
//!   ([`Calibration::Uncorrected`]): temperature differences inside a frame are
//!   on that scale; absolute temperatures are marked not calibrated because
//!   the emissivity, distance, humidity and reflected-temperature corrections
//!   of the SDK are not applied (expect a few kelvin; more for low emissivity).
//! - Zenmuse XT S: values near 5,200-5,500 for a scene of sky and a steel
//!   tower; no public scale (raw / 64 would be -190 C): [`Calibration::Relative`].
//! - Any other model with a container pvtherm recognises: relative, because
//!   its scale has not been checked.
//!
//! OpenDroneMap's `dji_unpack.py` converts M2EA planes with hard-coded FLIR
//! Planck constants (R1 21106.77, B 1501, O -7340); they are not DJI's and are
//! not used here.

use thiserror::Error;

use crate::decode_limit::{PixelLimit, TooLarge};
use crate::exif::{self, Metadata};
use crate::jpeg::{self, JpegError, Segment};

/// Which APP4 parameter layout a file has (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// exiftool `ThermalParams` (Zenmuse H20T).
    H20t,
    /// exiftool `ThermalParams2`: f32 values from `base`.
    Float { base: usize },
    /// exiftool `ThermalParams3`: u16 values after the magic at 32.
    Short,
    /// No parameter block (Zenmuse XT S).
    None,
}

impl Layout {
    /// The name used in reports ("ThermalParams", ...: exiftool's table names).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::H20t => "ThermalParams",
            Layout::Float { .. } => "ThermalParams2",
            Layout::Short => "ThermalParams3",
            Layout::None => "none",
        }
    }
}

/// The measurement parameters the camera stored with the frame (what the
/// operator set on the remote controller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Params {
    /// Object emissivity, 0..1.
    pub(crate) emissivity: f64,
    /// Object distance in metres.
    pub(crate) distance_m: f64,
    /// Relative humidity, 0..1.
    pub(crate) humidity: f64,
    /// Reflected apparent temperature in degrees C, when stored.
    pub(crate) reflected_c: Option<f64>,
    /// Ambient (air) temperature in degrees C, when stored.
    pub(crate) ambient_c: Option<f64>,
}

/// What the raw values of a DJI plane can be converted to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Calibration {
    /// degrees C = raw * `scale` + `offset`, without DJI's emissivity,
    /// distance and humidity corrections: temperature differences are on this
    /// scale, absolute values are not calibrated (`reason` says why).
    Uncorrected {
        scale: f32,
        offset: f32,
        reason: String,
    },
    /// No established scale: values are relative (`reason` says why).
    Relative { reason: String },
}

/// A decoded DJI thermal frame.
#[derive(Debug, Clone)]
pub(crate) struct DjiThermal {
    /// EXIF Model ("ZH20T", "M3T", "XT S", ...).
    pub(crate) model: String,
    /// The product name for messages ("Zenmuse H20T"), or the model.
    pub(crate) camera: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// The raw plane, row-major.
    pub(crate) raw: Vec<u16>,
    pub(crate) layout: Layout,
    /// The measurement parameters, `None` for [`Layout::None`].
    pub(crate) params: Option<Params>,
    pub(crate) calibration: Calibration,
    /// Time, position and pose from EXIF and XMP.
    pub(crate) metadata: Metadata,
    /// The camera's pixel pitch in micrometres when known, for the ground
    /// projection (with EXIF FocalLength).
    pub(crate) pixel_pitch_um: Option<f64>,
}

/// Why a DJI file could not be read.
#[derive(Debug, Error)]
pub(crate) enum DjiError {
    /// The JPEG structure itself is broken.
    #[error(transparent)]
    Jpeg(#[from] JpegError),
    /// A DJI thermal file whose layout pvtherm does not know.
    #[error(
        "DJI {camera} (EXIF Model {model:?}): {detail}. pvtherm does not know this \
         thermal layout; export the image with DJI Thermal Analysis Tool or the DJI \
         Thermal SDK (dji_irp -a measure --measurefmt float32) to a float32 TIFF in \
         degrees C, which pvtherm reads"
    )]
    UnknownLayout {
        model: String,
        camera: String,
        detail: String,
    },
    /// The raw plane is larger than the pixel limit allows.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
}

/// One camera pvtherm knows: what its raw values mean and its pixel pitch.
struct Camera {
    /// EXIF Model as the camera writes it.
    model: &'static str,
    /// Product name.
    name: &'static str,
    /// Whether the raw / 64 K scale applies (see the module doc).
    kelvin64: bool,
    /// Sensor pixel pitch in micrometres (data sheet).
    pixel_pitch_um: f64,
}

/// The cameras whose files were checked (module doc).
const CAMERAS: &[Camera] = &[
    Camera {
        model: "ZH20T",
        name: "Zenmuse H20T",
        kelvin64: true,
        pixel_pitch_um: 12.0,
    },
    Camera {
        model: "M30T",
        name: "Matrice 30T",
        kelvin64: true,
        pixel_pitch_um: 12.0,
    },
    Camera {
        model: "M3T",
        name: "Mavic 3 Thermal",
        kelvin64: true,
        pixel_pitch_um: 12.0,
    },
    Camera {
        model: "MAVIC2-ENTERPRISE-ADVANCED",
        name: "Mavic 2 Enterprise Advanced",
        kelvin64: true,
        pixel_pitch_um: 12.0,
    },
    Camera {
        model: "XT S",
        name: "Zenmuse XT S",
        kelvin64: false,
        pixel_pitch_um: 17.0,
    },
];

/// DJI's raw plane scale for the models where it is public: 1/64 K per count.
pub(crate) const KELVIN64_SCALE: f32 = 1.0 / 64.0;

/// Sensor sizes a raw plane may have, recognised from its byte length.
const SENSOR_SIZES: &[(u32, u32)] = &[(640, 512), (1280, 1024), (320, 256)];

/// Reads a DJI-native thermal JPEG. `Ok(None)` when the file is not one (not
/// made by DJI, or a DJI photo without a raw thermal plane, e.g. from the
/// visible camera); an error when it is a DJI thermal file that cannot be
/// read, naming the camera, the segment and what to do. A plane over `limit`
/// is refused before its pixels are copied out.
pub(crate) fn parse(bytes: &[u8], limit: PixelLimit) -> Result<Option<DjiThermal>, DjiError> {
    let segments = jpeg::segments(bytes)?;
    let metadata = exif::from_jpeg_segments(&segments);
    if metadata.make.as_deref() != Some("DJI") {
        return Ok(None);
    }
    let model = metadata.model.clone().unwrap_or_default();
    let known = CAMERAS.iter().find(|c| c.model == model);
    let camera = known.map_or_else(|| model.clone(), |c| c.name.to_string());
    let unknown = |detail: String| DjiError::UnknownLayout {
        model: model.clone(),
        camera: camera.clone(),
        detail,
    };
    let app3 = concat(&segments, 0xE3);
    let app4 = concat(&segments, 0xE4);
    let (plane, layout, params) = if let Some(size) = sensor_size(app3.len()) {
        let (layout, params) = read_params(&segments).map_err(unknown)?;
        ((app3, size), layout, Some(params))
    } else if let Some(size) = sensor_size(app4.len()) {
        ((app4, size), Layout::None, None)
    } else if app3.len() + app4.len() > 64 * 1024 {
        return Err(unknown(format!(
            "APP3 holds {} and APP4 {} bytes, neither is a raw u16 plane of a known \
             sensor size ({})",
            app3.len(),
            app4.len(),
            sizes_list()
        )));
    } else {
        return Ok(None);
    };
    let (data, (width, height)) = plane;
    limit.check(
        &format!("DJI {camera} raw plane"),
        width.into(),
        height.into(),
    )?;
    let raw = data
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let calibration = match known {
        Some(c) if c.kelvin64 => Calibration::Uncorrected {
            scale: KELVIN64_SCALE,
            offset: -273.15,
            reason: format!(
                "{camera}: DJI's raw scale of 1/64 K per count, without the emissivity, \
                 distance, humidity and reflected-temperature corrections of DJI's closed \
                 Thermal SDK; differences between modules are on this scale, absolute \
                 values can be off by several kelvin"
            ),
        },
        Some(c) => Calibration::Relative {
            reason: format!(
                "{}: no public scale for this camera's raw values; values are relative",
                c.name
            ),
        },
        None => Calibration::Relative {
            reason: format!(
                "DJI {camera}: the raw scale of this model has not been checked; values \
                 are relative (export a float32 TIFF with DJI's tools for temperatures)"
            ),
        },
    };
    Ok(Some(DjiThermal {
        model,
        camera,
        width,
        height,
        raw,
        layout,
        params,
        calibration,
        metadata,
        pixel_pitch_um: known.map(|c| c.pixel_pitch_um),
    }))
}

/// The payloads of all segments with `marker`, in file order, joined.
fn concat(segments: &[Segment<'_>], marker: u8) -> Vec<u8> {
    segments
        .iter()
        .filter(|s| s.marker == marker)
        .flat_map(|s| s.payload.iter().copied())
        .collect()
}

/// The sensor size whose u16 plane is `bytes` long.
fn sensor_size(bytes: usize) -> Option<(u32, u32)> {
    SENSOR_SIZES
        .iter()
        .copied()
        .find(|(w, h)| (*w as usize) * (*h as usize) * 2 == bytes)
}

fn sizes_list() -> String {
    SENSOR_SIZES
        .iter()
        .map(|(w, h)| format!("{w}x{h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds the APP4 parameter block and reads it; the error says what was
/// found (segment, offset, first bytes) for the unknown-layout message.
fn read_params(segments: &[Segment<'_>]) -> Result<(Layout, Params), String> {
    let Some(seg) = segments.iter().find(|s| s.marker == 0xE4) else {
        return Err("the raw plane is in APP3 but there is no APP4 parameter block".into());
    };
    let p = seg.payload;
    let u16_at = |off: usize| {
        p.get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as f64)
    };
    let f32_at = |off: usize| {
        p.get(off..off + 4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
    };
    let layout = if p.starts_with(&[0xAA, 0x55, 0x12, 0x06]) {
        Some(Layout::H20t)
    } else if p.get(32..36) == Some(&[0xAA, 0x55, 0x38, 0x00]) {
        Some(Layout::Short)
    } else {
        [0, 32]
            .into_iter()
            .find(|b| p.get(b + 32..b + 36) == Some(&[0x2C, 0x01, 0x20, 0x00]))
            .map(|base| Layout::Float { base })
    };
    let params = match layout {
        Some(Layout::H20t) => (|| {
            Some(Params {
                distance_m: u16_at(0x44)?,
                humidity: u16_at(0x46)? / 100.0,
                emissivity: u16_at(0x48)? / 100.0,
                reflected_c: Some(u16_at(0x4A)? / 10.0),
                ambient_c: Some(u16_at(0x4C)?),
            })
        })(),
        Some(Layout::Short) => (|| {
            Some(Params {
                humidity: u16_at(36)? / 100.0,
                distance_m: u16_at(38)? / 10.0,
                emissivity: u16_at(40)? / 100.0,
                reflected_c: Some(u16_at(42)? / 10.0),
                ambient_c: None,
            })
        })(),
        Some(Layout::Float { base }) => (|| {
            Some(Params {
                ambient_c: Some(f32_at(base)?),
                distance_m: f32_at(base + 4)?,
                emissivity: f32_at(base + 8)?,
                humidity: f32_at(base + 12)?,
                reflected_c: Some(f32_at(base + 16)?),
            })
        })(),
        Some(Layout::None) | None => None,
    };
    match (layout, params) {
        (Some(layout), Some(params)) => Ok((layout, params)),
        (Some(layout), None) => Err(format!(
            "{} at byte {}: {} block of {} bytes is too short",
            seg.name(),
            seg.offset,
            layout.name(),
            p.len()
        )),
        _ => Err(format!(
            "{} at byte {} ({} bytes, starting {}) is none of the known parameter \
             layouts (ThermalParams, ThermalParams2, ThermalParams3)",
            seg.name(),
            seg.offset,
            p.len(),
            p.iter()
                .take(8)
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
}

impl Params {
    /// Values outside their physical range, for a warning: such parameters
    /// are reported but flagged.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(self.emissivity > 0.0 && self.emissivity <= 1.0) {
            out.push(format!("emissivity {} is outside 0..1", self.emissivity));
        }
        if !(0.0..=1.0).contains(&self.humidity) {
            out.push(format!(
                "relative humidity {} is outside 0..1",
                self.humidity
            ));
        }
        if !(0.0..=10_000.0).contains(&self.distance_m) {
            out.push(format!(
                "object distance {} m is not plausible",
                self.distance_m
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::parse`] with the default pixel limit, which every fixture is under.
    fn parse(bytes: &[u8]) -> Result<Option<DjiThermal>, DjiError> {
        super::parse(bytes, PixelLimit::DEFAULT)
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dji")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The file with its (first) segment `marker` payload replaced by `payload`.
    fn with_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
        let seg = *jpeg::segments(jpeg)
            .unwrap()
            .iter()
            .find(|s| s.marker == marker)
            .unwrap();
        let end = seg.offset + 4 + seg.payload.len();
        let mut out = jpeg[..seg.offset].to_vec();
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&jpeg[end..]);
        out
    }

    fn app4_of(jpeg: &[u8]) -> Vec<u8> {
        concat(&jpeg::segments(jpeg).unwrap(), 0xE4)
    }

    fn min_max(raw: &[u16]) -> (u16, u16) {
        (*raw.iter().min().unwrap(), *raw.iter().max().unwrap())
    }

    #[test]
    fn h20t_thermalparams_layout_and_kelvin64_plane() {
        let t = parse(&fixture("H20T_a.jpg")).unwrap().unwrap();
        assert_eq!(
            (t.model.as_str(), t.camera.as_str()),
            ("ZH20T", "Zenmuse H20T")
        );
        assert_eq!((t.width, t.height, t.raw.len()), (640, 512, 640 * 512));
        // The plane `exiftool -b -ThermalData` extracts: first value 19282,
        // sum 6,153,723,860, range 18116..20518 (9.9..47.4 C at 1/64 K).
        assert_eq!(t.raw[0], 19282);
        assert_eq!(t.raw.iter().map(|&v| v as u64).sum::<u64>(), 6_153_723_860);
        assert_eq!(min_max(&t.raw), (18116, 20518));
        assert_eq!(t.layout, Layout::H20t);
        let p = t.params.unwrap();
        assert_eq!((p.distance_m, p.humidity, p.emissivity), (5.0, 0.7, 1.0));
        assert_eq!((p.reflected_c, p.ambient_c), (Some(23.0), Some(21.0)));
        assert!(p.problems().is_empty());
        let Calibration::Uncorrected {
            scale,
            offset,
            reason,
        } = &t.calibration
        else {
            panic!("{:?}", t.calibration)
        };
        assert_eq!((*scale, *offset), (1.0 / 64.0, -273.15));
        assert!(reason.contains("without the emissivity"), "{reason}");
        assert_eq!(t.pixel_pitch_um, Some(12.0));
        assert_eq!(t.metadata.focal_length_mm, Some(13.5));
    }

    #[test]
    fn m3t_float_layout_after_header() {
        let t = parse(&fixture("M3T.jpg")).unwrap().unwrap();
        assert_eq!((t.width, t.height), (640, 512));
        // As exiftool extracts it: sum 6,370,636,992.
        assert_eq!(t.raw.iter().map(|&v| v as u64).sum::<u64>(), 6_370_636_992);
        assert_eq!(min_max(&t.raw), (19112, 20364));
        assert_eq!(t.layout, Layout::Float { base: 32 });
        let p = t.params.unwrap();
        assert_eq!(
            (p.ambient_c, p.distance_m, p.humidity),
            (Some(25.0), 5.0, 0.5)
        );
        assert!((p.emissivity - 0.95).abs() < 1e-6);
        assert_eq!(p.reflected_c, Some(25.0));
        assert!(matches!(t.calibration, Calibration::Uncorrected { .. }));
    }

    /// The Mavic 2 Enterprise Advanced writes the ThermalParams2 floats from
    /// byte 0 (no header): the M3T block without its 32-byte header, in place.
    #[test]
    fn float_layout_without_header() {
        let m3t = fixture("M3T.jpg");
        let app4 = app4_of(&m3t);
        let t = parse(&with_segment(&m3t, 0xE4, &app4[32..]))
            .unwrap()
            .unwrap();
        assert_eq!(t.layout, Layout::Float { base: 0 });
        assert_eq!(t.params.unwrap().distance_m, 5.0);
    }

    /// No public file with the ThermalParams3 layout is at hand: the M3T file
    /// with its APP4 replaced by such a block (exiftool's table: magic at 32,
    /// humidity 60 %, distance 50 = 5.0 m, emissivity 98 = 0.98, reflected
    /// 230 = 23.0 C).
    #[test]
    fn short_layout_from_exiftool_table() {
        let mut block = vec![0u8; 32];
        block.extend_from_slice(&[0xAA, 0x55, 0x38, 0x00, 60, 0, 50, 0, 98, 0, 230, 0]);
        block.resize(256, 0);
        let t = parse(&with_segment(&fixture("M3T.jpg"), 0xE4, &block))
            .unwrap()
            .unwrap();
        assert_eq!(t.layout, Layout::Short);
        let p = t.params.unwrap();
        assert_eq!((p.humidity, p.distance_m, p.emissivity), (0.6, 5.0, 0.98));
        assert_eq!((p.reflected_c, p.ambient_c), (Some(23.0), None));
    }

    #[test]
    fn xts_plane_in_app4_is_relative() {
        let t = parse(&fixture("XTS.jpg")).unwrap().unwrap();
        assert_eq!((t.width, t.height), (640, 512));
        assert_eq!(min_max(&t.raw), (5217, 5518));
        assert_eq!((t.layout, t.params), (Layout::None, None));
        let Calibration::Relative { reason } = &t.calibration else {
            panic!("{:?}", t.calibration)
        };
        assert!(reason.contains("Zenmuse XT S"), "{reason}");
        assert_eq!(t.pixel_pitch_um, Some(17.0));
    }

    #[test]
    fn unknown_layout_names_the_camera_and_the_fix() {
        let bad = with_segment(&fixture("M3T.jpg"), 0xE4, &[0x12; 256]);
        let e = parse(&bad).unwrap_err().to_string();
        for want in [
            "Mavic 3 Thermal",
            "\"M3T\"",
            "APP4 at byte",
            "12 12 12",
            "float32 TIFF",
        ] {
            assert!(e.contains(want), "{want:?} missing in: {e}");
        }
        // A plane cut short (one APP3 segment dropped) is not a known size.
        let m3t = fixture("M3T.jpg");
        let app3 = *jpeg::segments(&m3t)
            .unwrap()
            .iter()
            .find(|s| s.marker == 0xE3)
            .unwrap();
        let mut cut = m3t[..app3.offset].to_vec();
        cut.extend_from_slice(&m3t[app3.offset + 4 + app3.payload.len()..]);
        let e = parse(&cut).unwrap_err().to_string();
        assert!(e.contains("APP3 holds 589828"), "{e}");
        assert!(e.contains("640x512"), "{e}");
    }

    #[test]
    fn non_dji_and_truncated_files() {
        let flir = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/pv/images/001R.jpg"),
        )
        .unwrap();
        // The XT2's FLIR R-JPEG has Make "DJI" but no DJI raw plane: not ours.
        assert!(parse(&flir).unwrap().is_none());
        let h20t = fixture("H20T_a.jpg");
        let e = parse(&h20t[..300_000]).unwrap_err();
        assert!(matches!(e, DjiError::Jpeg(JpegError::Truncated(_))), "{e}");
    }
}
