//! Load any supported thermal image file into a [`Frame`], so replays, the
//! `detect`/`eval` commands and the tests read files through one function.
//!
//! Supported (detected by content first, then by file name):
//! - FLIR R-JPEG and `.fff`: 16-bit raw counts, [`Radiometry::Planck`] from the
//!   file (relative for FLIR models sold without radiometry);
//! - DJI-native R-JPEG (H20T, M30T, M3T, M2EA, XT S, ...): the raw thermal
//!   plane, never the palette picture (`crate::dji`);
//! - plain JPEG (no FLIR or DJI data): 8-bit grey (luma), [`Radiometry::Relative`];
//! - radiometric TIFF: float degrees C, or 16-bit with a known or configured
//!   scale (`crate::radiometric_tiff`); other PNG and TIFF, 8 or 16 bit: grey
//!   (colour is converted to luma), Relative;
//! - FLIR `.csq` video: refused with what to do (JPEG-LS frames);
//! - raw Lepton frames `.y16` / `.y16le` (headerless u16 little-endian): size from
//!   a `WxH` part of the file name (`x.160x120.y16le`) or from the length
//!   (160x120, 80x60), decoded by the camera's Y16 decoder so a file reads
//!   as the same frame from the camera would (`crate::radiometry::Y16Content::classify`):
//!   TLinear centi-kelvin frames are Linear{0.01, -273.15}, AGC and raw-count
//!   frames are Relative;
//! - tCam `.tjsn` JSON: base64 `radiometric` field, read like a `.y16` frame.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};

use crate::decode_limit::PixelLimit;
use crate::formats::{self, RadiometricMode};
use crate::frame::{Decoded, Frame, Pixels};
use crate::provenance::{self, Provenance};
use crate::radiometric_tiff::RawScale;
use crate::radiometry::Radiometry;

mod thermal;

/// File name extensions [`load_frame`] understands (lower case).
pub(crate) const EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "fff", "png", "tif", "tiff", "y16", "y16le", "tjsn", "csq",
];

/// Headerless frame sizes recognised from the file length alone (Lepton 3.x, 2.x).
const KNOWN_Y16_SIZES: &[(u32, u32)] = &[(160, 120), (80, 60)];

/// Whether the file name has an extension [`load_frame`] understands, so a
/// folder replay can skip annotations and notes without warning about them.
pub(crate) fn is_supported(path: &Path) -> bool {
    extension(path).is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

/// The files of folder `dir` that [`load_frame`] understands, sorted by name
/// (not recursive; sub-folders and other files are left out). Empty when
/// there are none: what that means is the caller's to say.
pub fn image_files_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_supported(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The lower-case extension of `path`, if any.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// How [`load_frame_with`] reads files whose content does not say everything.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadOptions {
    /// degrees C = raw * scale + offset for 16-bit TIFFs of cameras whose
    /// scale pvtherm does not know (`[source.replay] raw_scale` / `raw_offset`).
    pub(crate) raw_scale: Option<(f32, f32)>,
    /// Most pixels a decoded image may have (`[source] max_pixels`), checked
    /// from the header before anything of that size is allocated.
    pub(crate) pixel_limit: PixelLimit,
}

/// A real 640x512 drone frame built into the binary (an 8-bit rendering of
/// the raw plane of the fixture tests/fixtures/pv/images/001R.jpg; 32
/// modules): what `precision = "auto"` times the model pairs on, so that the
/// choice is made before the camera delivers anything.
pub fn sample_frame() -> anyhow::Result<Frame> {
    const SAMPLE: &[u8] = include_bytes!("../models/timing-frame.jpg");
    let decoded = decode_raster(SAMPLE, image::ImageFormat::Jpeg, PixelLimit::DEFAULT)?;
    Ok(decoded.into_frame(0, SystemTime::now(), "built-in sample frame".into())?)
}

/// Loads one file as a [`Frame`] with the given sequence number and default
/// [`LoadOptions`]; see [`load_frame_with`].
pub fn load_frame(path: &Path, sequence: u64) -> anyhow::Result<Frame> {
    load_frame_with(path, sequence, &LoadOptions::default())
}

/// Loads one file as a [`Frame`] with the given sequence number. `origin` is
/// the path; `captured_at` is the file's own capture time (FLIR CameraInfo,
/// EXIF DateTimeOriginal) when it has one, else its modification time; the
/// frame's `Provenance` says which, which calibration applies and which
/// plausibility checks failed. Errors name the file and the problem.
pub fn load_frame_with(path: &Path, sequence: u64, options: &LoadOptions) -> anyhow::Result<Frame> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: cannot read file", path.display()))?;
    let (decoded, mut prov) = decode(path, &bytes, options)
        .with_context(|| format!("{}: cannot load image", path.display()))?;
    // The file's own capture time wins; the modification time is looked up
    // only for files without one.
    let captured_at = decoded.captured_at.unwrap_or_else(|| {
        prov.time_source = Some("file modification time");
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now())
    });
    let mut frame = decoded.into_frame(sequence, captured_at, path.display().to_string())?;
    if let Some(flag) = provenance::scene_flag(frame.pixels(), &frame.radiometry) {
        prov.flags.push(flag);
    }
    frame.provenance = prov;
    Ok(frame)
}

/// Dispatches on the content (magic bytes), then on the extension for the
/// headerless formats.
fn decode(path: &Path, bytes: &[u8], options: &LoadOptions) -> anyhow::Result<thermal::Loaded> {
    let plain = |d: anyhow::Result<Decoded>| d.map(|d| (d, Provenance::default()));
    let limit = options.pixel_limit;
    if bytes.is_empty() {
        bail!("empty file");
    }
    // A CSQ is a sequence of FFF records: refuse it before the FFF reader
    // calls its JPEG-LS frames corrupt.
    if extension(path).as_deref() == Some("csq") {
        bail!(thermal::CSQ_UNSUPPORTED);
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return thermal::decode_jpeg(bytes, limit);
    }
    if bytes.starts_with(b"FFF\0") {
        return thermal::decode_fff(bytes, limit);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return plain(decode_raster(bytes, image::ImageFormat::Png, limit));
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        let scale = options
            .raw_scale
            .map(|(scale, offset)| RawScale { scale, offset });
        return thermal::decode_tiff(bytes, scale, limit);
    }
    match extension(path).as_deref() {
        Some("y16" | "y16le") => plain(decode_y16(path, bytes, limit)),
        Some("tjsn") => plain(decode_tjsn(bytes, limit)),
        Some("jpg" | "jpeg") => bail!("not an image: no JPEG SOI marker"),
        Some(e) if EXTENSIONS.contains(&e) => {
            bail!("not an image: content does not match the .{e} extension")
        }
        _ => bail!(
            "not an image: unknown format (supported: {})",
            EXTENSIONS.join(", ")
        ),
    }
}

/// JPEG, PNG or TIFF through the `image` crate: 16-bit stays 16-bit, anything
/// else becomes 8-bit luma. No absolute temperature (Relative).
fn decode_raster(
    bytes: &[u8],
    format: image::ImageFormat,
    limit: PixelLimit,
) -> anyhow::Result<Decoded> {
    let img = limit.decode_image(bytes, format)?;
    let (width, height) = (img.width(), img.height());
    let pixels = match img {
        image::DynamicImage::ImageLuma8(b) => Pixels::Gray8(b.into_raw()),
        image::DynamicImage::ImageLuma16(b) => Pixels::Gray16(b.into_raw()),
        other if other.color().bytes_per_pixel() / other.color().channel_count() >= 2 => {
            Pixels::Gray16(other.to_luma16().into_raw())
        }
        other => Pixels::Gray8(other.to_luma8().into_raw()),
    };
    Ok(Decoded {
        width,
        height,
        pixels,
        radiometry: Radiometry::Relative,
        captured_at: None,
    })
}

/// Headerless u16 little-endian frame, size from the name or the length.
fn decode_y16(path: &Path, bytes: &[u8], limit: PixelLimit) -> anyhow::Result<Decoded> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (width, height) = match size_from_name(name) {
        Some((w, h)) => {
            let expected = (w as usize)
                .checked_mul(h as usize)
                .and_then(|n| n.checked_mul(2));
            if expected != Some(bytes.len()) {
                bail!(
                    "file name says {w}x{h} (expected {} bytes of u16) but the file has {} bytes",
                    2 * w as u64 * h as u64,
                    bytes.len()
                );
            }
            (w, h)
        }
        None => size_from_len(bytes.len())?,
    };
    lepton_frame(width, height, bytes, limit)
}

/// `name.160x120.y16le` -> (160, 120): the first `WxH` dot-separated part.
fn size_from_name(name: &str) -> Option<(u32, u32)> {
    name.split('.').find_map(|part| {
        let (w, h) = part.split_once(['x', 'X'])?;
        let (w, h) = (w.parse::<u32>().ok()?, h.parse::<u32>().ok()?);
        (w > 0 && h > 0).then_some((w, h))
    })
}

fn size_from_len(len: usize) -> anyhow::Result<(u32, u32)> {
    KNOWN_Y16_SIZES
        .iter()
        .copied()
        .find(|&(w, h)| w as usize * h as usize * 2 == len)
        .with_context(|| {
            format!(
                "{len} bytes is not a known raw frame size (160x120 or 80x60 u16); name the file like frame.WxH.y16le"
            )
        })
}

/// A packed Lepton u16 LE frame, through the camera's Y16 decoder with the
/// content judged per frame, so a file and the camera read the same.
fn lepton_frame(
    width: u32,
    height: u32,
    bytes: &[u8],
    limit: PixelLimit,
) -> anyhow::Result<Decoded> {
    limit.check("raw frame", width.into(), height.into())?;
    Ok(formats::decode_y16(
        width,
        height,
        bytes,
        RadiometricMode::Auto,
    )?)
}

/// tCam `.tjsn`: `{"metadata": {...}, "radiometric": "<base64 u16 LE>", ...}`.
fn decode_tjsn(bytes: &[u8], limit: PixelLimit) -> anyhow::Result<Decoded> {
    #[derive(serde::Deserialize)]
    struct Tjsn {
        radiometric: String,
    }
    let doc: Tjsn = serde_json::from_slice(bytes)
        .context("not a tCam .tjsn file (JSON with a \"radiometric\" field)")?;
    let raw = decode_base64(&doc.radiometric)
        .context("tCam \"radiometric\" field is not valid base64")?;
    let (w, h) = size_from_len(raw.len()).context("tCam \"radiometric\" field")?;
    lepton_frame(w, h, &raw, limit)
}

/// Standard base64 (RFC 4648, with or without padding; whitespace ignored).
fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in text.bytes().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = value(c).with_context(|| format!("invalid character {:?} at {i}", c as char))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radiometry::LEPTON_TLINEAR;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    fn celsius_range(f: &Frame) -> (f32, f32) {
        let lut = f.radiometry.celsius_lut().expect("radiometric");
        (0..f.pixels().len())
            .filter_map(|i| lut.get(f.pixels().get(i)))
            .fold((f32::MAX, f32::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)))
    }

    #[test]
    fn rjpeg_loads_as_planck_frame() {
        let f = load_frame(&fixture("pv/images/030R.jpg"), 7).unwrap();
        assert_eq!((f.width(), f.height(), f.sequence), (640, 512, 7));
        assert!(matches!(f.pixels(), Pixels::Gray16(_)));
        assert!(matches!(f.radiometry, Radiometry::Planck(_)));
        assert!(f.origin.ends_with("030R.jpg"));
        let (lo, hi) = celsius_range(&f);
        assert!(lo > 15.0 && hi < 65.0, "{lo}..{hi}");
    }

    #[test]
    fn plain_jpeg_is_relative_grey() {
        let f = load_frame(&fixture("bad/no_flir_20180630_154039.jpg"), 0).unwrap();
        assert_eq!((f.width(), f.height()), (640, 512));
        assert!(matches!(f.pixels(), Pixels::Gray8(_)));
        assert_eq!(f.radiometry, Radiometry::Relative);
    }

    #[test]
    fn fff_loads() {
        let f = load_frame(&fixture("fff/frame_000000_le.fff"), 0).unwrap();
        assert_eq!((f.width(), f.height()), (320, 240));
        let (lo, hi) = celsius_range(&f);
        assert!(lo > 15.0 && hi < 40.0, "{lo}..{hi}");
    }

    #[test]
    fn lepton_y16_frames() {
        let f = load_frame(&fixture("lepton/agc_off.160x120.y16le"), 0).unwrap();
        assert_eq!((f.width(), f.height()), (160, 120));
        assert_eq!(f.radiometry, LEPTON_TLINEAR);
        let (lo, hi) = celsius_range(&f);
        assert!(
            (lo - 2.08).abs() < 0.05 && (hi - 65.48).abs() < 0.05,
            "{lo}..{hi}"
        );

        let f = load_frame(&fixture("lepton/fox.160x120.y16le"), 0).unwrap();
        let (lo, hi) = celsius_range(&f);
        assert!(
            (lo + 10.95).abs() < 0.05 && (hi - 8.86).abs() < 0.05,
            "{lo}..{hi}"
        );

        let f = load_frame(&fixture("lepton/agc_on.160x120.y16le"), 0).unwrap();
        assert_eq!(f.radiometry, Radiometry::Relative);
        let f = load_frame(&fixture("lepton/lepton3_rawcounts_frame0.160x120.y16"), 0).unwrap();
        assert_eq!(f.radiometry, Radiometry::Relative);
    }

    #[test]
    fn y16_size_from_length_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(fixture("lepton/fox.160x120.y16le")).unwrap();
        let p = dir.path().join("frame.y16");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(load_frame(&p, 0).unwrap().width(), 160);
        let p = dir.path().join("frame.80x60.y16");
        std::fs::write(&p, &bytes).unwrap();
        let err = format!("{:#}", load_frame(&p, 0).unwrap_err());
        assert!(
            err.contains("frame.80x60.y16") && err.contains("80x60"),
            "{err}"
        );
        let p = dir.path().join("odd.y16");
        std::fs::write(&p, &bytes[..1000]).unwrap();
        let err = format!("{:#}", load_frame(&p, 0).unwrap_err());
        assert!(
            err.contains("odd.y16") && err.contains("1000 bytes"),
            "{err}"
        );
    }

    #[test]
    fn tjsn_matches_y16() {
        let a = load_frame(&fixture("lepton/agc_off.tjsn"), 0).unwrap();
        let b = load_frame(&fixture("lepton/agc_off.160x120.y16le"), 0).unwrap();
        assert_eq!(a.pixels(), b.pixels());
        assert_eq!(a.radiometry, LEPTON_TLINEAR);
    }

    #[test]
    fn png_and_tiff_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = load_frame(&fixture("lepton/fox.160x120.y16le"), 0).unwrap();
        let Pixels::Gray16(v) = src.pixels() else {
            panic!()
        };
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(160, 120, v.clone()).unwrap();
        for ext in ["png", "tiff"] {
            let p = dir.path().join(format!("f.{ext}"));
            img.save(&p).unwrap();
            let f = load_frame(&p, 0).unwrap();
            assert_eq!(f.pixels(), src.pixels(), "{ext}");
            assert_eq!(f.radiometry, Radiometry::Relative);
        }
        let p = dir.path().join("g.png");
        image::GrayImage::from_pixel(4, 3, image::Luma([9]))
            .save(&p)
            .unwrap();
        assert_eq!(
            load_frame(&p, 0).unwrap().pixels(),
            &Pixels::Gray8(vec![9; 12])
        );
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        for (name, problem) in [
            ("bad/truncated_001R.jpg", "truncated"),
            ("bad/not_an_image.jpg", "not an image"),
            ("does_not_exist.jpg", "cannot read file"),
        ] {
            let err = format!("{:#}", load_frame(&fixture(name), 0).unwrap_err());
            let file = name.rsplit('/').next().unwrap();
            assert!(err.contains(file) && err.contains(problem), "{err}");
        }
    }

    #[test]
    fn a_lowered_pixel_limit_refuses_real_frames_of_every_format_naming_the_key() {
        // Every decoder path, on real frames (PNG and TIFF written from a
        // real Lepton frame), with a limit of 100x100: each is refused with
        // the limit and the key to raise, and each loads with the default.
        let dir = tempfile::tempdir().unwrap();
        let fox = load_frame(&fixture("lepton/fox.160x120.y16le"), 0).unwrap();
        let Pixels::Gray16(v) = fox.pixels() else {
            panic!("the Lepton fixture is 16-bit")
        };
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(160, 120, v.clone()).unwrap();
        let mut files: Vec<PathBuf> = ["png", "tiff"]
            .iter()
            .map(|ext| {
                let p = dir.path().join(format!("fox.{ext}"));
                img.save(&p).unwrap();
                p
            })
            .collect();
        files.extend(
            [
                "pv/images/001R.jpg",
                "fff/frame_000000_le.fff",
                "dji/H20T_a.jpg",
                "bad/no_flir_20180630_154039.jpg",
                "lepton/fox.160x120.y16le",
                "lepton/agc_off.tjsn",
            ]
            .map(fixture),
        );
        let small = LoadOptions {
            pixel_limit: PixelLimit::new(100 * 100),
            ..LoadOptions::default()
        };
        for file in &files {
            let err = format!("{:#}", load_frame_with(file, 0, &small).unwrap_err());
            assert!(
                err.contains("over the limit of 10000 pixels")
                    && err.contains("[source] max_pixels = 10000"),
                "{}: {err}",
                file.display()
            );
            load_frame_with(file, 0, &LoadOptions::default()).unwrap();
        }
    }

    #[test]
    fn base64_decoder() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert!(decode_base64("a*b").is_err());
    }

    #[test]
    fn lepton_files_read_as_the_camera_reads_them() {
        // The same Lepton frame, once from a file and once as a PureThermal
        // buffer through the V4L2 decoder, must give the same radiometry and
        // pixels: TLinear (warm and below-freezing scenes), AGC and raw counts.
        for (name, expected) in [
            ("agc_off.160x120.y16le", LEPTON_TLINEAR),
            ("fox.160x120.y16le", LEPTON_TLINEAR),
            ("agc_on.160x120.y16le", Radiometry::Relative),
            ("lepton3_rawcounts_frame0.160x120.y16", Radiometry::Relative),
        ] {
            let path = fixture(&format!("lepton/{name}"));
            let file = load_frame(&path, 0).unwrap();
            let buffer = std::fs::read(&path).unwrap();
            let camera = formats::decode(
                &formats::BufferLayout::packed(formats::PixelFormat::Y16, 160, 120),
                &buffer,
                RadiometricMode::Auto,
            )
            .unwrap();
            assert_eq!(file.radiometry, expected, "{name}");
            assert_eq!(camera.radiometry, file.radiometry, "{name}");
            assert_eq!(&camera.pixels, file.pixels(), "{name}");
            assert_eq!((camera.width, camera.height), (file.width(), file.height()));
        }
    }

    #[test]
    fn folder_listing_keeps_supported_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.y16", "notes.txt", "c.TIFF"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.jpg")).unwrap();
        let names: Vec<String> = image_files_in(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.y16", "b.jpg", "c.TIFF"]);
        let err = image_files_in(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }

    #[test]
    fn supported_extensions() {
        assert!(is_supported(Path::new("a/B.JPG")));
        assert!(is_supported(Path::new("x.160x120.y16le")));
        assert!(!is_supported(Path::new("a/b.json")));
    }
}
