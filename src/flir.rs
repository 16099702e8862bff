//! FLIR radiometric JPEG (R-JPEG) and FFF container parsing: the raw counts
//! and the Planck constants a file carries. Turning them into degrees C is
//! [`crate::radiometry`]'s job.
//!
//! Pure Rust, no exiftool at run time. The layout follows exiftool's
//! `Image::ExifTool::FLIR` (FLIR.pm): an R-JPEG carries an FFF container split
//! over APP1 segments that start with `FLIR\0`; the FFF container holds a record
//! directory; the RawData record (type 0x01) holds the 16-bit raw image and the
//! CameraInfo record (type 0x20) the Planck and object constants.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::decode_limit::{PixelLimit, TooLarge};
use crate::radiometry::{PlanckParams, KELVIN};

/// Largest raw image side we accept (sanity bound against corrupt records).
const MAX_SIDE: usize = 16_384;

/// A FLIR raw thermal image with the constants needed to read temperatures.
#[derive(Debug, Clone, PartialEq)]
pub struct RadiometricImage {
    /// Raw image width in pixels.
    pub width: u32,
    /// Raw image height in pixels.
    pub(crate) height: u32,
    /// Raw counts, row-major, `width * height` values.
    pub raw: Vec<u16>,
    /// Planck and object constants from the CameraInfo record.
    pub planck: PlanckParams,
    /// Capture time from CameraInfo (DateTimeOriginal), when the file has one.
    pub(crate) captured_at: Option<SystemTime>,
    /// Camera model string from CameraInfo (for logs and reports; may be empty).
    pub(crate) camera_model: String,
}

/// Why FLIR data could not be read. [`FlirError::NoFlirData`] is kept apart so
/// that callers can fall back to the visible JPEG.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlirError {
    /// The bytes are not a JPEG at all.
    #[error("not a JPEG file (no SOI marker)")]
    NotJpeg,
    /// A well-formed JPEG without any `FLIR` APP1 segment.
    #[error("JPEG has no FLIR radiometric data (no FLIR APP1 segment)")]
    NoFlirData,
    /// The data ends before a structure it declares.
    #[error("truncated: {0}")]
    Truncated(String),
    /// The data is present but inconsistent.
    #[error("corrupt FLIR data: {0}")]
    Corrupt(String),
    /// Well-formed data in an encoding pvtherm does not decode.
    #[error("unsupported FLIR data: {0}")]
    Unsupported(String),
    /// The raw image is larger than the pixel limit allows.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
}

type FlirResult<T> = Result<T, FlirError>;

/// Reads a FLIR R-JPEG or a standalone FFF file (detected by content).
/// Errors name the file and the problem. Raw images are bounded by the
/// default `PixelLimit`.
pub fn read_file(path: &Path) -> anyhow::Result<RadiometricImage> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: cannot read file", path.display()))?;
    parse_bytes(&bytes)
        .with_context(|| format!("{}: cannot read FLIR radiometric data", path.display()))
}

/// Parses an in-memory R-JPEG (starts with the JPEG SOI marker) or FFF file,
/// with the default [`PixelLimit`].
pub(crate) fn parse_bytes(bytes: &[u8]) -> FlirResult<RadiometricImage> {
    let limit = PixelLimit::DEFAULT;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        parse_rjpeg(bytes, limit)
    } else {
        parse_fff(bytes, limit)
    }
}

/// Parses a FLIR radiometric JPEG: collects the FLIR APP1 chunks and parses
/// the FFF container they form; a raw image over `limit` is refused.
pub(crate) fn parse_rjpeg(jpeg: &[u8], limit: PixelLimit) -> FlirResult<RadiometricImage> {
    let fff = extract_flir_app1(jpeg)?;
    parse_fff(&fff, limit)
}

/// Concatenates, in chunk order, the payloads of the JPEG's APP1 segments that
/// start with `FLIR\0`. Each such segment has an 8-byte header: `FLIR\0`, one
/// byte, the chunk index and the chunk count minus one (as exiftool reads it).
pub(crate) fn extract_flir_app1(jpeg: &[u8]) -> FlirResult<Vec<u8>> {
    use crate::jpeg::JpegError;
    let segments = crate::jpeg::segments(jpeg).map_err(|e| match e {
        JpegError::NotJpeg => FlirError::NotJpeg,
        JpegError::Truncated(what) => FlirError::Truncated(format!("JPEG {what}")),
        JpegError::Corrupt(what) => FlirError::Corrupt(format!("JPEG {what}")),
    })?;
    let mut chunks: Vec<Option<&[u8]>> = Vec::new();
    for segment in segments {
        let (marker, payload) = (segment.marker, segment.payload);
        if marker == 0xE1 && payload.len() >= 8 && payload.starts_with(b"FLIR\0") {
            let index = payload[6] as usize;
            let total = payload[7] as usize + 1;
            if chunks.is_empty() {
                chunks.resize(total, None);
            } else if chunks.len() != total {
                return Err(FlirError::Corrupt(format!(
                    "FLIR APP1 chunk counts disagree ({} and {total})",
                    chunks.len()
                )));
            }
            let slot = chunks.get_mut(index).ok_or_else(|| {
                FlirError::Corrupt(format!("FLIR APP1 chunk index {index} >= count {total}"))
            })?;
            if slot.is_some() {
                return Err(FlirError::Corrupt(format!(
                    "duplicate FLIR APP1 chunk {index}"
                )));
            }
            *slot = Some(&payload[8..]);
        }
    }
    if chunks.is_empty() {
        return Err(FlirError::NoFlirData);
    }
    let mut out = Vec::with_capacity(chunks.iter().flatten().map(|c| c.len()).sum());
    for (i, c) in chunks.iter().enumerate() {
        let c = c.ok_or_else(|| {
            FlirError::Corrupt(format!(
                "FLIR APP1 chunk {} of {} is missing",
                i + 1,
                chunks.len()
            ))
        })?;
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Byte order of an FFF structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Big,
    Little,
}

/// A bounds-checked reader over one FFF record (or the header).
#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    order: Order,
    what: &'static str,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> FlirResult<[u8; N]> {
        self.data
            .get(off..off + N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                FlirError::Truncated(format!(
                    "{} is {} bytes, field at offset 0x{off:x} needs {N}",
                    self.what,
                    self.data.len()
                ))
            })
    }
    fn u16(&self, off: usize) -> FlirResult<u16> {
        let b = self.bytes::<2>(off)?;
        Ok(match self.order {
            Order::Big => u16::from_be_bytes(b),
            Order::Little => u16::from_le_bytes(b),
        })
    }
    fn u32(&self, off: usize) -> FlirResult<u32> {
        let b = self.bytes::<4>(off)?;
        Ok(match self.order {
            Order::Big => u32::from_be_bytes(b),
            Order::Little => u32::from_le_bytes(b),
        })
    }
    fn i32(&self, off: usize) -> FlirResult<i32> {
        Ok(self.u32(off)? as i32)
    }
    fn f32(&self, off: usize) -> FlirResult<f64> {
        Ok(f32::from_bits(self.u32(off)?) as f64)
    }
    /// Records carry their own byte order: the first u16 is 2 in the right order
    /// (exiftool toggles when it reads >= 0x100).
    fn with_record_order(mut self) -> FlirResult<Self> {
        if self.u16(0)? >= 0x100 {
            self.order = match self.order {
                Order::Big => Order::Little,
                Order::Little => Order::Big,
            };
        }
        Ok(self)
    }
}

/// FFF record type of the raw thermal image.
const REC_RAW_DATA: u16 = 0x01;
/// FFF record type of the camera information (Planck constants).
const REC_CAMERA_INFO: u16 = 0x20;

/// Parses an FFF container (standalone `.fff` file or the concatenated FLIR
/// APP1 payload of an R-JPEG). The RawData size is checked against `limit`
/// before its pixels are decoded.
pub(crate) fn parse_fff(fff: &[u8], limit: PixelLimit) -> FlirResult<RadiometricImage> {
    if fff.len() < 4 || !(fff.starts_with(b"FFF\0") || fff.starts_with(b"AFF\0")) {
        return Err(FlirError::Corrupt(
            "no FFF header (expected \"FFF\\0\")".into(),
        ));
    }
    if fff.len() < 0x40 {
        return Err(FlirError::Truncated(format!(
            "FFF header is {} bytes, needs 64",
            fff.len()
        )));
    }
    // The byte order is the one in which the format version reads 100..199.
    let order = [Order::Big, Order::Little]
        .into_iter()
        .find(|&o| {
            let r = Reader {
                data: fff,
                order: o,
                what: "FFF header",
            };
            matches!(r.u32(0x14), Ok(100..=199))
        })
        .ok_or_else(|| FlirError::Corrupt("unsupported FFF version".into()))?;
    let header = Reader {
        data: fff,
        order,
        what: "FFF header",
    };
    let dir_off = header.u32(0x18)? as usize;
    let dir_count = header.u32(0x1c)? as usize;
    let dir_len = dir_count
        .checked_mul(0x20)
        .filter(|&l| dir_off.checked_add(l).is_some_and(|e| e <= fff.len()))
        .ok_or_else(|| {
            FlirError::Truncated(format!(
                "FFF record directory ({dir_count} entries at offset {dir_off}) runs past the end of the FLIR data ({} bytes)",
                fff.len()
            ))
        })?;
    let dir = Reader {
        data: &fff[dir_off..dir_off + dir_len],
        order,
        what: "FFF record directory",
    };

    let mut raw_rec = None;
    let mut info_rec = None;
    for i in 0..dir_count {
        let e = i * 0x20;
        let rec_type = dir.u16(e)?;
        if rec_type != REC_RAW_DATA && rec_type != REC_CAMERA_INFO {
            continue;
        }
        let off = dir.u32(e + 0x0c)? as usize;
        let len = dir.u32(e + 0x10)? as usize;
        let data = off.checked_add(len).and_then(|end| fff.get(off..end)).ok_or_else(|| {
            FlirError::Truncated(format!(
                "FFF record 0x{rec_type:02x} (offset {off}, length {len}) runs past the end of the FLIR data ({} bytes)",
                fff.len()
            ))
        })?;
        let slot = if rec_type == REC_RAW_DATA {
            &mut raw_rec
        } else {
            &mut info_rec
        };
        slot.get_or_insert(data);
    }
    let raw_rec = raw_rec.ok_or_else(|| FlirError::Corrupt("FFF has no RawData record".into()))?;
    let info_rec =
        info_rec.ok_or_else(|| FlirError::Corrupt("FFF has no CameraInfo record".into()))?;

    let info = Reader {
        data: info_rec,
        order,
        what: "CameraInfo record",
    }
    .with_record_order()?;
    let planck = parse_camera_info(&info)?;
    let (width, height, raw) = parse_raw_data(
        Reader {
            data: raw_rec,
            order,
            what: "RawData record",
        },
        limit,
    )?;
    Ok(RadiometricImage {
        width,
        height,
        raw,
        planck,
        captured_at: capture_time(&info),
        camera_model: c_string(info_rec.get(0xd4..0xd4 + 32).unwrap_or_default()),
    })
}

/// Reads the Planck and object constants (offsets from exiftool's
/// `FLIR::CameraInfo` table; temperatures are stored in kelvin).
fn parse_camera_info(r: &Reader) -> FlirResult<PlanckParams> {
    let humidity = r.f32(0x3c)?;
    let p = PlanckParams {
        emissivity: r.f32(0x20)?,
        object_distance: r.f32(0x24)?,
        reflected_temp_c: r.f32(0x28)? - KELVIN,
        atmospheric_temp_c: r.f32(0x2c)? - KELVIN,
        ir_window_temp_c: r.f32(0x30)? - KELVIN,
        ir_window_transmission: r.f32(0x34)?,
        // Some FFF files store percent (exiftool: "$val > 2 ? $val / 100 : $val").
        relative_humidity: if humidity > 2.0 {
            humidity / 100.0
        } else {
            humidity
        },
        r1: r.f32(0x58)?,
        b: r.f32(0x5c)?,
        f: r.f32(0x60)?,
        alpha1: r.f32(0x70)?,
        alpha2: r.f32(0x74)?,
        beta1: r.f32(0x78)?,
        beta2: r.f32(0x7c)?,
        x: r.f32(0x80)?,
        o: r.i32(0x308)? as f64,
        r2: r.f32(0x30c)?,
    };
    p.check()
        .map_err(|e| FlirError::Corrupt(format!("CameraInfo: {e}")))?;
    Ok(p)
}

/// DateTimeOriginal at CameraInfo 0x384: u32 Unix seconds (UTC), u32 whose
/// low 16 bits are milliseconds, i16 time zone (not needed for an instant).
fn capture_time(r: &Reader) -> Option<SystemTime> {
    let secs = r.u32(0x384).ok()?;
    let millis = r.u32(0x388).ok()? & 0xffff;
    if secs == 0 || millis >= 1000 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_millis(millis as u64))
}

/// A NUL-terminated string field, lossy UTF-8, trimmed.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

/// Decodes the RawData record: u16 width at 2, height at 4, image from 0x20,
/// either plain u16 in the record's byte order, a PNG or a TIFF; a size over
/// `limit` is refused from the header.
fn parse_raw_data(r: Reader, limit: PixelLimit) -> FlirResult<(u32, u32, Vec<u16>)> {
    let r = r.with_record_order()?;
    let (w, h) = (r.u16(2)? as usize, r.u16(4)? as usize);
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(FlirError::Corrupt(format!(
            "RawData has an impossible size {w}x{h}"
        )));
    }
    limit.check("FLIR RawData", w as u64, h as u64)?;
    let body = r.data.get(0x20..).unwrap_or_default();
    let n = w * h;
    let raw = if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        let raw = decode_embedded(body, image::ImageFormat::Png, w, h, limit)?;
        fix_png_byte_order(raw, w)
    } else if body.starts_with(b"II*\0") || body.starts_with(b"MM\0*") {
        decode_embedded(body, image::ImageFormat::Tiff, w, h, limit)?
    } else if body.starts_with(&[0xFF, 0xD8, 0xFF, 0xF7]) {
        // SOI + SOF55: the JPEG-LS frames of FLIR CSQ/SEQ video.
        return Err(FlirError::Unsupported(format!(
            "RawData {w}x{h} is JPEG-LS compressed (a frame of FLIR CSQ video), which \
             pvtherm does not decode; export the frames as radiometric JPEGs with FLIR \
             Thermal Studio or FLIR Tools, which pvtherm reads"
        )));
    } else if body.len() == n * 2 {
        body.chunks_exact(2)
            .map(|c| match r.order {
                Order::Big => u16::from_be_bytes([c[0], c[1]]),
                Order::Little => u16::from_le_bytes([c[0], c[1]]),
            })
            .collect()
    } else {
        return Err(FlirError::Corrupt(format!(
            "RawData for {w}x{h} holds {} bytes, expected {} (16-bit) or a PNG/TIFF image",
            body.len(),
            n * 2
        )));
    };
    Ok((w as u32, h as u32, raw))
}

/// Decodes an embedded 16-bit single-channel PNG or TIFF of the expected
/// size; `limit` bounds what its own header may claim.
fn decode_embedded(
    body: &[u8],
    format: image::ImageFormat,
    w: usize,
    h: usize,
    limit: PixelLimit,
) -> FlirResult<Vec<u16>> {
    let img = limit
        .decode_image(body, format)
        .map_err(|e| FlirError::Corrupt(format!("embedded {format:?} raw image: {e:#}")))?;
    if (img.width() as usize, img.height() as usize) != (w, h) {
        return Err(FlirError::Corrupt(format!(
            "embedded {format:?} raw image is {}x{}, RawData says {w}x{h}",
            img.width(),
            img.height()
        )));
    }
    match img {
        image::DynamicImage::ImageLuma16(buf) => Ok(buf.into_raw()),
        other => Err(FlirError::Corrupt(format!(
            "embedded {format:?} raw image is {:?}, expected 16-bit grey",
            other.color()
        ))),
    }
}

/// Most FLIR cameras write the 16-bit PNG samples in the wrong (little-endian)
/// byte order, some do not. The right order gives a smooth image: pick the one
/// with the smaller mean difference between horizontal neighbours; on a tie keep
/// the FLIR convention (swapped).
fn fix_png_byte_order(raw: Vec<u16>, width: usize) -> Vec<u16> {
    let roughness = |swap: bool| -> u64 {
        raw.chunks_exact(width)
            .flat_map(|row| row.windows(2))
            .map(|p| {
                let (a, b) = if swap {
                    (p[0].swap_bytes(), p[1].swap_bytes())
                } else {
                    (p[0], p[1])
                };
                a.abs_diff(b) as u64
            })
            .sum()
    };
    if roughness(false) < roughness(true) {
        raw
    } else {
        raw.into_iter().map(u16::swap_bytes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    #[test]
    fn rjpeg_dataset1_decodes_with_exiftool_constants() {
        let img = read_file(&fixture("pv/images/001R.jpg")).unwrap();
        assert_eq!(
            (img.width, img.height, img.raw.len()),
            (640, 512, 640 * 512)
        );
        let p = img.planck;
        // exiftool -a -G1 -s -n 001R.jpg
        assert_eq!(
            (p.r1, p.b, p.f, p.o, p.r2),
            (391683.0, 1428.0, 1.0, -37.0, 1.0)
        );
        assert_eq!(p.emissivity, 1.0);
        assert_eq!(p.object_distance, 0.0);
        assert!((p.reflected_temp_c - 19.9999938964844).abs() < 1e-9);
        assert!((p.atmospheric_temp_c - 19.9999938964844).abs() < 1e-9);
        assert!((p.ir_window_temp_c - 19.9999938964844).abs() < 1e-9);
        assert_eq!(p.ir_window_transmission, 1.0);
        assert!((p.relative_humidity - 0.300000011920929).abs() < 1e-9);
        assert!((p.alpha1 - 0.00656899996101856).abs() < 1e-12);
        assert!((p.alpha2 - 0.0126200001686811).abs() < 1e-12);
        assert!((p.beta1 + 0.00227600010111928).abs() < 1e-12);
        assert!((p.beta2 + 0.00667000003159046).abs() < 1e-12);
        assert!((p.x - 1.89999997615814).abs() < 1e-9);
        assert_eq!(img.camera_model, "XT2");
        // 2019:07:01 10:34:02.365+08:00
        let t = img.captured_at.unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(t.as_millis(), 1_561_948_442_365);
        // Plausible temperatures of a PV plant in the sun.
        let table = p.celsius_table();
        let temps: Vec<f32> = img.raw.iter().map(|&r| table[r as usize]).collect();
        let (lo, hi) = temps
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        assert!(lo > 15.0 && hi < 65.0, "{lo}..{hi}");
    }

    #[test]
    fn rjpeg_dataset2_constants() {
        let img = read_file(&fixture("pv/images/20180630_154039.jpg")).unwrap();
        assert_eq!((img.width, img.height), (640, 512));
        let p = img.planck;
        assert_eq!((p.r1, p.b, p.f, p.o), (17096.453125, 1428.0, 1.0, -342.0));
        assert!((p.r2 - 0.0466421656310558).abs() < 1e-12);
        assert_eq!(p.object_distance, 50.0);
        assert!((p.relative_humidity - 0.449999988079071).abs() < 1e-9);
        assert_eq!(img.camera_model, "Vue Pro 640 9mm");
    }

    #[test]
    fn fff_file_parses() {
        let img = read_file(&fixture("fff/frame_000000_le.fff")).unwrap();
        assert_eq!((img.width, img.height), (320, 240));
        let p = img.planck;
        assert!((p.r1 - 16125.7880859375).abs() < 1e-9);
        assert!((p.b - 1420.09997558594).abs() < 1e-9);
        assert_eq!(p.o, -5588.0);
        assert!((p.r2 - 0.010903412476182).abs() < 1e-12);
        assert!((p.emissivity - 0.949999988079071).abs() < 1e-9);
        assert!((p.atmospheric_temp_c - 18.9999938964844).abs() < 1e-9);
        assert_eq!(p.relative_humidity, 0.5);
    }

    #[test]
    fn plain_jpeg_has_no_flir_data() {
        let bytes = std::fs::read(fixture("bad/no_flir_20180630_154039.jpg")).unwrap();
        assert!(matches!(parse_bytes(&bytes), Err(FlirError::NoFlirData)));
        assert!(matches!(parse_bytes(b"hello"), Err(FlirError::Corrupt(_))));
        assert!(matches!(
            parse_rjpeg(b"hello", PixelLimit::DEFAULT),
            Err(FlirError::NotJpeg)
        ));
    }

    #[test]
    fn truncations_and_corruptions_are_errors_not_panics() {
        for name in ["pv/images/001R.jpg", "fff/frame_000000_le.fff"] {
            let bytes = std::fs::read(fixture(name)).unwrap();
            // The FFF data: a JPEG cut inside its compressed visible image still has
            // complete radiometric data, so cut only up to the end of the FLIR segments.
            let flir_at = bytes.windows(5).position(|w| w == b"FLIR\0").unwrap_or(0);
            let flir_end = bytes
                .windows(2)
                .rposition(|w| w == [0xFF, 0xDA])
                .unwrap_or(bytes.len());
            let mut cuts: Vec<usize> = (0..80).collect();
            cuts.extend((1..40).map(|i| flir_end * i / 40));
            cuts.extend(flir_at..flir_at + 80);
            for cut in cuts {
                assert!(
                    parse_bytes(&bytes[..cut]).is_err(),
                    "{name} cut at {cut} parsed"
                );
            }
            // Flipped bytes in the FLIR header, directory and records must not panic
            // (some still parse: a flipped pixel is a valid pixel).
            for i in (flir_at..flir_at + 4096).step_by(3) {
                let mut b = bytes.clone();
                b[i] ^= 0xA5;
                let _ = parse_bytes(&b);
            }
        }
    }

    #[test]
    fn png_byte_order_is_detected() {
        let smooth: Vec<u16> = (0..64u16).map(|i| 7000 + i).collect();
        assert_eq!(fix_png_byte_order(smooth.clone(), 8), smooth);
        let swapped: Vec<u16> = smooth.iter().map(|v| v.swap_bytes()).collect();
        assert_eq!(fix_png_byte_order(swapped, 8), smooth);
    }
}
