//! Pure decoders from a V4L2 capture buffer (or a raw frame file) to pixels
//! and radiometry. No I/O and no device access here, so every format can be
//! unit-tested against captured frames and files such as Lepton `.y16` dumps.
//!
//! Supported layouts:
//! - **Y16**: 16-bit little-endian grey (FLIR Lepton on a PureThermal board,
//!   160x120 or 80x60). With TLinear on the values are centi-kelvin; with AGC
//!   on they are 0..255; with neither they are raw 14-bit sensor counts.
//! - **GREY**: 8-bit grey, no temperature.
//! - **YUYV**: 4:2:2 packed YUV; the luma is kept as 8-bit grey, no temperature.
//! - **TC001** (TOPDON TC001 / InfiRay P2 Pro): announced as YUYV 256x384; the
//!   upper half is a false-colour preview (ignored), the lower half is u16 LE
//!   temperature with degrees C = raw / 64 - 273.15.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::frame::{Decoded, Pixels};
use crate::radiometry::{Radiometry, Y16Content, LEPTON_TLINEAR, TC001_LINEAR};

/// A pixel layout pvtherm can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PixelFormat {
    /// 16-bit little-endian grey (V4L2 `Y16 `): Lepton/PureThermal.
    Y16,
    /// The TC001/InfiRay layout inside a YUYV frame (V4L2 `YUYV`, 256x384).
    Tc001,
    /// 8-bit grey (V4L2 `GREY`).
    Grey,
    /// Packed 4:2:2 YUV (V4L2 `YUYV`); the luma is used.
    Yuyv,
}

impl PixelFormat {
    /// All formats, in the order `auto` negotiation prefers them
    /// (radiometric first).
    pub(crate) const PREFERENCE: [PixelFormat; 4] = [
        PixelFormat::Y16,
        PixelFormat::Tc001,
        PixelFormat::Grey,
        PixelFormat::Yuyv,
    ];

    /// The V4L2 fourcc the device announces for this layout.
    pub(crate) fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Y16 => *b"Y16 ",
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Yuyv | PixelFormat::Tc001 => *b"YUYV",
        }
    }

    /// Short name as used in the config and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PixelFormat::Y16 => "Y16",
            PixelFormat::Tc001 => "TC001",
            PixelFormat::Grey => "GREY",
            PixelFormat::Yuyv => "YUYV",
        }
    }

    /// Bytes one pixel occupies in the V4L2 buffer (minimum bytes per line =
    /// width * this).
    pub(crate) fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Grey => 1,
            PixelFormat::Y16 | PixelFormat::Yuyv | PixelFormat::Tc001 => 2,
        }
    }

    /// The frame size the device must announce for this layout to be usable,
    /// when the layout imposes one (TC001: 256x384 YUYV).
    pub(crate) fn required_device_size(self) -> Option<(u32, u32)> {
        match self {
            PixelFormat::Tc001 => Some((TC001_WIDTH, TC001_HEIGHT)),
            _ => None,
        }
    }

    /// Size of the decoded frame for a device frame of `width` x `height`
    /// (TC001 keeps only the lower half).
    pub(crate) fn output_size(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            PixelFormat::Tc001 => (width, height / 2),
            _ => (width, height),
        }
    }
}

/// Device frame width of the TC001/InfiRay layout.
pub(crate) const TC001_WIDTH: u32 = 256;
/// Device frame height of the TC001/InfiRay layout (preview + temperature halves).
pub(crate) const TC001_HEIGHT: u32 = 384;

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PixelFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "Y16" => Ok(PixelFormat::Y16),
            "TC001" => Ok(PixelFormat::Tc001),
            "GREY" | "GRAY" => Ok(PixelFormat::Grey),
            "YUYV" => Ok(PixelFormat::Yuyv),
            other => Err(format!(
                "unknown pixel format {other:?}: use one of Y16, TC001, GREY, YUYV"
            )),
        }
    }
}

/// Whether Y16 frames are centi-kelvin (config key `radiometric`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RadiometricMode {
    /// Decide per frame with `Y16Content::classify`, the rule image files
    /// follow too: AGC output and raw counts are relative, centi-kelvin of a
    /// real scene is absolute.
    #[default]
    Auto,
    /// Always centi-kelvin (camera known to run with TLinear on).
    Yes,
    /// Never absolute (camera runs AGC or without TLinear).
    No,
}

impl FromStr for RadiometricMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(RadiometricMode::Auto),
            "yes" | "true" => Ok(RadiometricMode::Yes),
            "no" | "false" => Ok(RadiometricMode::No),
            other => Err(format!(
                "unknown radiometric mode {other:?}: use auto, yes or no"
            )),
        }
    }
}

/// Where the pixels are in a buffer: format, device frame size and line pitch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLayout {
    /// The pixel layout.
    pub format: PixelFormat,
    /// Device frame width in pixels.
    pub width: u32,
    /// Device frame height in lines (TC001: both halves, 384).
    pub height: u32,
    /// Bytes from one line to the next (V4L2 `bytesperline`); 0 = packed.
    pub bytes_per_line: u32,
}

impl BufferLayout {
    /// A layout without line padding (raw files, most USB cameras).
    pub(crate) fn packed(format: PixelFormat, width: u32, height: u32) -> Self {
        BufferLayout {
            format,
            width,
            height,
            bytes_per_line: 0,
        }
    }

    /// Bytes of pixel data in one line (without padding).
    pub(crate) fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel()
    }

    /// The effective line pitch (`bytes_per_line`, or the packed row size when 0).
    pub(crate) fn stride(&self) -> usize {
        if self.bytes_per_line == 0 {
            self.row_bytes()
        } else {
            self.bytes_per_line as usize
        }
    }

    /// Smallest buffer that holds a full frame (the last line needs no padding).
    pub(crate) fn min_buffer_len(&self) -> usize {
        match self.height {
            0 => 0,
            h => self.stride() * (h as usize - 1) + self.row_bytes(),
        }
    }

    /// Checks the layout itself (sizes, stride), before any buffer is looked at.
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        if self.width == 0 || self.height == 0 {
            return Err(DecodeError::EmptyFrame {
                format: self.format,
                width: self.width,
                height: self.height,
            });
        }
        if self.stride() < self.row_bytes() {
            return Err(DecodeError::StrideTooSmall {
                format: self.format,
                width: self.width,
                bytes_per_line: self.bytes_per_line,
                needed: self.row_bytes(),
            });
        }
        if self.format == PixelFormat::Tc001 && !self.height.is_multiple_of(2) {
            return Err(DecodeError::Tc001OddHeight {
                height: self.height,
            });
        }
        Ok(())
    }
}

/// Why a buffer could not be decoded. The messages name the format and sizes
/// so an operator can compare them with `pvtherm cameras`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Width or height is zero.
    #[error(
        "{format} frame has no pixels ({width}x{height}): check the configured width and height"
    )]
    EmptyFrame {
        format: PixelFormat,
        width: u32,
        height: u32,
    },
    /// The driver's line pitch is shorter than one line of pixels.
    #[error("{format} frame {width} pixels wide needs at least {needed} bytes per line, the driver reports {bytes_per_line}")]
    StrideTooSmall {
        format: PixelFormat,
        width: u32,
        bytes_per_line: u32,
        needed: usize,
    },
    /// The buffer holds less than one full frame (truncated file, short read).
    #[error("{format} {width}x{height} frame needs {needed} bytes but the buffer holds {got}: truncated frame or wrong width/height/format")]
    ShortBuffer {
        format: PixelFormat,
        width: u32,
        height: u32,
        needed: usize,
        got: usize,
    },
    /// A TC001 frame must stack two equal halves.
    #[error("TC001 frame height {height} is odd: the layout stacks a preview and a temperature half of equal height (256x384)")]
    Tc001OddHeight { height: u32 },
}

/// Decodes one buffer laid out as `layout`. `radiometric` only matters for
/// Y16 (TC001 is always absolute; GREY and YUYV never are). Extra bytes after
/// the frame are ignored (mmap buffers are page-rounded); a short buffer is an
/// error, never a panic.
pub(crate) fn decode(
    layout: &BufferLayout,
    data: &[u8],
    radiometric: RadiometricMode,
) -> Result<Decoded, DecodeError> {
    layout.validate()?;
    let needed = layout.min_buffer_len();
    if data.len() < needed {
        return Err(DecodeError::ShortBuffer {
            format: layout.format,
            width: layout.width,
            height: layout.height,
            needed,
            got: data.len(),
        });
    }
    let (width, height) = layout.format.output_size(layout.width, layout.height);
    let (pixels, radiometry) = match layout.format {
        PixelFormat::Grey => (
            Pixels::Gray8(collect_rows(layout, data, 0, |row| row.to_vec())),
            Radiometry::Relative,
        ),
        PixelFormat::Yuyv => (
            Pixels::Gray8(collect_rows(layout, data, 0, |row| {
                row.iter().step_by(2).copied().collect()
            })),
            Radiometry::Relative,
        ),
        PixelFormat::Y16 => {
            let values = collect_rows(layout, data, 0, le_u16_row);
            let radiometry = y16_radiometry(&values, radiometric);
            (Pixels::Gray16(values), radiometry)
        }
        PixelFormat::Tc001 => (
            Pixels::Gray16(collect_rows(layout, data, height as usize, le_u16_row)),
            TC001_LINEAR,
        ),
    };
    Ok(Decoded {
        width,
        height,
        pixels,
        radiometry,
        captured_at: None,
    })
}

/// Decodes a packed little-endian Y16 frame (a Lepton `.y16` file or a
/// PureThermal buffer without padding).
pub(crate) fn decode_y16(
    width: u32,
    height: u32,
    data: &[u8],
    radiometric: RadiometricMode,
) -> Result<Decoded, DecodeError> {
    decode(
        &BufferLayout::packed(PixelFormat::Y16, width, height),
        data,
        radiometric,
    )
}

/// The radiometry of Y16 values under the configured mode.
pub(crate) fn y16_radiometry(values: &[u16], mode: RadiometricMode) -> Radiometry {
    match mode {
        RadiometricMode::Yes => LEPTON_TLINEAR,
        RadiometricMode::No => Radiometry::Relative,
        RadiometricMode::Auto => Y16Content::classify(values).radiometry(),
    }
}

/// Runs `convert` on the pixel bytes of each output line, starting `skip_rows`
/// lines into the buffer, and concatenates the results. The caller has checked
/// the buffer length against the layout.
fn collect_rows<T, F>(layout: &BufferLayout, data: &[u8], skip_rows: usize, convert: F) -> Vec<T>
where
    F: Fn(&[u8]) -> Vec<T>,
{
    let (width, height) = layout.format.output_size(layout.width, layout.height);
    let stride = layout.stride();
    let row_bytes = layout.row_bytes();
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for y in skip_rows..skip_rows + height as usize {
        let start = y * stride;
        out.extend(convert(&data[start..start + row_bytes]));
    }
    out
}

/// Little-endian u16 values of one line.
fn le_u16_row(row: &[u8]) -> Vec<u16> {
    row.chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lepton")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn celsius(radiometry: &Radiometry, raw: u16) -> f32 {
        match radiometry {
            Radiometry::Linear { scale, offset } => raw as f32 * scale + offset,
            other => panic!("not linear: {other:?}"),
        }
    }

    fn gray16(d: &Decoded) -> &[u16] {
        match &d.pixels {
            Pixels::Gray16(v) => v,
            other => panic!("not 16-bit: {other:?}"),
        }
    }

    fn gray8(d: &Decoded) -> &[u8] {
        match &d.pixels {
            Pixels::Gray8(v) => v,
            other => panic!("not 8-bit: {other:?}"),
        }
    }

    #[test]
    fn lepton_radiometric_frame_decodes_to_celsius() {
        let data = fixture("agc_off.160x120.y16le");
        let d = decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap();
        assert_eq!((d.width, d.height), (160, 120));
        assert_eq!(d.radiometry, LEPTON_TLINEAR);
        let v = gray16(&d);
        assert_eq!(v.len(), 160 * 120);
        let (min, max) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
        // SOURCE.md: 27,523..33,863 = 2.1..65.5 degrees C.
        assert_eq!((min, max), (27_523, 33_863));
        assert!((celsius(&d.radiometry, min) - 2.08).abs() < 0.01);
        assert!((celsius(&d.radiometry, max) - 65.48).abs() < 0.01);
        // First pixel straight from the bytes: little-endian.
        assert_eq!(v[0], u16::from_le_bytes([data[0], data[1]]));
    }

    #[test]
    fn lepton_cold_scene_is_still_radiometric() {
        // fox: -10.9..8.9 degrees C, below freezing must not look like raw counts.
        let d = decode_y16(
            160,
            120,
            &fixture("fox.160x120.y16le"),
            RadiometricMode::Auto,
        )
        .unwrap();
        assert!(d.radiometry.is_absolute());
        let v = gray16(&d);
        let min_c = celsius(&d.radiometry, *v.iter().min().unwrap());
        assert!((min_c - -10.95).abs() < 0.01, "{min_c}");
    }

    #[test]
    fn lepton_agc_frame_is_relative() {
        let data = fixture("agc_on.160x120.y16le");
        let values = le_u16_row(&data);
        assert_eq!(Y16Content::classify(&values), Y16Content::Agc);
        let d = decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap();
        assert_eq!(d.radiometry, Radiometry::Relative);
        // The operator may still force it (then it is their call).
        let forced = decode_y16(160, 120, &data, RadiometricMode::Yes).unwrap();
        assert_eq!(forced.radiometry, LEPTON_TLINEAR);
    }

    #[test]
    fn lepton_raw_counts_are_relative() {
        let data = fixture("lepton3_rawcounts_frame0.160x120.y16");
        let values = le_u16_row(&data);
        assert_eq!(Y16Content::classify(&values), Y16Content::RawCounts);
        let d = decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap();
        assert_eq!(d.radiometry, Radiometry::Relative);
        let v = gray16(&d);
        // SOURCE.md: raw counts in 2,920..3,856.
        assert!(v.iter().all(|&x| (2_900..=3_900).contains(&x)));
    }

    #[test]
    fn radiometric_no_overrides_plausible_values() {
        let data = fixture("agc_off.160x120.y16le");
        let d = decode_y16(160, 120, &data, RadiometricMode::No).unwrap();
        assert_eq!(d.radiometry, Radiometry::Relative);
    }

    #[test]
    fn lepton_frame_with_padded_lines() {
        // Re-lay the real frame with 64 padding bytes per line, as a driver with
        // an aligned bytesperline would deliver it.
        let data = fixture("agc_off.160x120.y16le");
        let stride = 160 * 2 + 64;
        let mut padded = vec![0xEE; stride * 120];
        for (y, row) in data.chunks_exact(320).enumerate() {
            padded[y * stride..y * stride + 320].copy_from_slice(row);
        }
        let layout = BufferLayout {
            format: PixelFormat::Y16,
            width: 160,
            height: 120,
            bytes_per_line: stride as u32,
        };
        let d = decode(&layout, &padded, RadiometricMode::Auto).unwrap();
        let plain = decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap();
        assert_eq!(d, plain);
    }

    #[test]
    fn lepton2_size_frame() {
        // 80x60 (Lepton 2.x): take the top-left quarter of a real frame.
        let data = fixture("agc_off.160x120.y16le");
        let layout = BufferLayout {
            format: PixelFormat::Y16,
            width: 80,
            height: 60,
            bytes_per_line: 320,
        };
        let d = decode(&layout, &data, RadiometricMode::Auto).unwrap();
        assert_eq!((d.width, d.height), (80, 60));
        let full = decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap();
        assert_eq!(gray16(&d)[80 + 5], gray16(&full)[160 + 5]);
    }

    #[test]
    fn short_buffers_are_clear_errors() {
        let data = fixture("agc_off.160x120.y16le");
        let err = decode_y16(160, 120, &data[..38_399], RadiometricMode::Auto).unwrap_err();
        assert_eq!(
            err,
            DecodeError::ShortBuffer {
                format: PixelFormat::Y16,
                width: 160,
                height: 120,
                needed: 38_400,
                got: 38_399
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("38400") && msg.contains("38399"), "{msg}");
        // Wrong size guess (160x120 file read as 256x192): error, no panic.
        assert!(decode_y16(256, 192, &data, RadiometricMode::Auto).is_err());
        assert!(decode_y16(0, 120, &data, RadiometricMode::Auto).is_err());
        let bad_stride = BufferLayout {
            bytes_per_line: 100,
            ..BufferLayout::packed(PixelFormat::Y16, 160, 120)
        };
        assert!(matches!(
            decode(&bad_stride, &data, RadiometricMode::Auto),
            Err(DecodeError::StrideTooSmall { needed: 320, .. })
        ));
        for format in PixelFormat::PREFERENCE {
            let layout = BufferLayout::packed(format, 256, 384);
            assert!(decode(&layout, &[], RadiometricMode::Auto).is_err());
            assert!(decode(&layout, &[0; 1000], RadiometricMode::Auto).is_err());
        }
    }

    #[test]
    fn extra_bytes_after_frame_are_ignored() {
        let mut data = fixture("fox.160x120.y16le");
        let plain = decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap();
        data.resize(40_960, 0xAB); // page-rounded mmap buffer
        assert_eq!(
            decode_y16(160, 120, &data, RadiometricMode::Auto).unwrap(),
            plain
        );
    }

    /// A TC001 frame as the device sends it: 256x384 "YUYV", a preview in the
    /// upper half, u16 LE 1/64 K in the lower half. `temp_c(x, y)` gives the
    /// temperature of the lower-half pixel.
    fn synth_tc001(bytes_per_line: usize, temp_c: impl Fn(usize, usize) -> f64) -> Vec<u8> {
        let mut buf = vec![0u8; bytes_per_line * 384];
        for y in 0..192 {
            // Preview half: a YUYV grey ramp, must be ignored by the decoder.
            for x in 0..256 {
                buf[y * bytes_per_line + 2 * x] = x as u8;
                buf[y * bytes_per_line + 2 * x + 1] = 128;
            }
        }
        for y in 0..192 {
            for x in 0..256 {
                let raw = ((temp_c(x, y) + 273.15) * 64.0).round() as u16;
                let at = (192 + y) * bytes_per_line + 2 * x;
                buf[at..at + 2].copy_from_slice(&raw.to_le_bytes());
            }
        }
        buf
    }

    #[test]
    fn tc001_lower_half_is_temperature() {
        // A 25 degree C panel with a 68.5 degree C hot spot at (200, 150).
        let data = synth_tc001(512, |x, y| if (x, y) == (200, 150) { 68.5 } else { 25.0 });
        let layout = BufferLayout::packed(PixelFormat::Tc001, 256, 384);
        let d = decode(&layout, &data, RadiometricMode::No).unwrap();
        assert_eq!((d.width, d.height), (256, 192));
        assert_eq!(d.radiometry, TC001_LINEAR);
        let v = gray16(&d);
        assert_eq!(v.len(), 256 * 192);
        assert!((celsius(&d.radiometry, v[0]) - 25.0).abs() < 1.0 / 64.0);
        let hot = celsius(&d.radiometry, v[150 * 256 + 200]);
        assert!((hot - 68.5).abs() < 1.0 / 64.0, "{hot}");
        let max = *v.iter().max().unwrap();
        assert_eq!(max, v[150 * 256 + 200]);
    }

    #[test]
    fn tc001_gradient_with_padding() {
        // -20..+120 degrees C across the width, on a padded buffer.
        let temp = |x: usize, y: usize| -20.0 + x as f64 * 140.0 / 255.0 + y as f64 * 0.01;
        let data = synth_tc001(576, temp);
        let layout = BufferLayout {
            format: PixelFormat::Tc001,
            width: 256,
            height: 384,
            bytes_per_line: 576,
        };
        let d = decode(&layout, &data, RadiometricMode::Auto).unwrap();
        let v = gray16(&d);
        for (x, y) in [(0, 0), (255, 0), (128, 100), (17, 191)] {
            let got = celsius(&d.radiometry, v[y * 256 + x]) as f64;
            assert!((got - temp(x, y)).abs() < 0.02, "({x},{y}): {got}");
        }
    }

    #[test]
    fn tc001_rejects_odd_height_and_short_buffer() {
        let layout = BufferLayout::packed(PixelFormat::Tc001, 256, 383);
        assert!(matches!(
            decode(&layout, &[0; 256 * 2 * 383], RadiometricMode::Auto),
            Err(DecodeError::Tc001OddHeight { height: 383 })
        ));
        let layout = BufferLayout::packed(PixelFormat::Tc001, 256, 384);
        // Only the preview half arrived.
        let half = vec![0u8; 256 * 2 * 192];
        assert!(matches!(
            decode(&layout, &half, RadiometricMode::Auto),
            Err(DecodeError::ShortBuffer {
                needed: 196_608,
                ..
            })
        ));
    }

    #[test]
    fn grey_with_padding() {
        let (w, h, stride) = (5usize, 3usize, 8usize);
        let mut data = vec![0xFF; stride * h];
        for y in 0..h {
            for x in 0..w {
                data[y * stride + x] = (10 * y + x) as u8;
            }
        }
        let layout = BufferLayout {
            format: PixelFormat::Grey,
            width: w as u32,
            height: h as u32,
            bytes_per_line: stride as u32,
        };
        let d = decode(&layout, &data, RadiometricMode::Yes).unwrap();
        assert_eq!(d.radiometry, Radiometry::Relative);
        assert_eq!(
            gray8(&d),
            &[0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24]
        );
    }

    #[test]
    fn yuyv_keeps_luma() {
        // Two lines of 4 pixels: Y0 U Y1 V Y2 U Y3 V, plus 4 padding bytes.
        let line = |base: u8| {
            vec![
                base,
                0x80,
                base + 1,
                0x90,
                base + 2,
                0x80,
                base + 3,
                0x90,
                9,
                9,
                9,
                9,
            ]
        };
        let data = [line(16), line(100)].concat();
        let layout = BufferLayout {
            format: PixelFormat::Yuyv,
            width: 4,
            height: 2,
            bytes_per_line: 12,
        };
        let d = decode(&layout, &data, RadiometricMode::Auto).unwrap();
        assert_eq!(gray8(&d), &[16, 17, 18, 19, 100, 101, 102, 103]);
        assert_eq!(d.radiometry, Radiometry::Relative);
    }

    #[test]
    fn yuyv_of_a_real_frame_keeps_its_8bit_content() {
        // The AGC Lepton frame (8-bit values in 16-bit words) re-packed as YUYV
        // luma must come back unchanged.
        let agc = le_u16_row(&fixture("agc_on.160x120.y16le"));
        let yuyv: Vec<u8> = agc.iter().flat_map(|&v| [v as u8, 128]).collect();
        let d = decode(
            &BufferLayout::packed(PixelFormat::Yuyv, 160, 120),
            &yuyv,
            RadiometricMode::Auto,
        )
        .unwrap();
        let expected: Vec<u8> = agc.iter().map(|&v| v as u8).collect();
        assert_eq!(gray8(&d), expected.as_slice());
        let grey = decode(
            &BufferLayout::packed(PixelFormat::Grey, 160, 120),
            &expected,
            RadiometricMode::Auto,
        )
        .unwrap();
        assert_eq!(grey.pixels, d.pixels);
    }

    #[test]
    fn names_parse_and_round_trip() {
        for f in PixelFormat::PREFERENCE {
            assert_eq!(f.name().parse::<PixelFormat>().unwrap(), f);
        }
        assert_eq!("grey".parse::<PixelFormat>().unwrap(), PixelFormat::Grey);
        assert!("MJPG".parse::<PixelFormat>().unwrap_err().contains("Y16"));
        assert_eq!(
            "auto".parse::<RadiometricMode>().unwrap(),
            RadiometricMode::Auto
        );
        assert!("maybe".parse::<RadiometricMode>().is_err());
        assert_eq!(PixelFormat::Tc001.fourcc(), *b"YUYV");
        assert_eq!(PixelFormat::Y16.fourcc(), *b"Y16 ");
    }

    #[test]
    fn into_frame_validates() {
        let d = decode_y16(
            160,
            120,
            &fixture("fox.160x120.y16le"),
            RadiometricMode::Auto,
        )
        .unwrap();
        let f = d.into_frame(7, SystemTime::UNIX_EPOCH, "test".into());
        assert!(f.is_ok());
        assert_eq!(f.unwrap().sequence, 7);
    }
}
