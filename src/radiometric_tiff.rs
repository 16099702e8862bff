//! Radiometric TIFFs: temperature images that other tools and cameras write,
//! read as temperatures instead of grey levels.
//!
//! - Single-channel float (32 or 64 bit) TIFFs hold degrees C per pixel: what
//!   DJI's Thermal SDK based converters (DJI Thermal Analysis Tool, Thermal
//!   Tools for WebODM, dji_irp `-a measure --measurefmt float32` turned into
//!   TIFF) and IRimage write. Values are taken as degrees C: a file in
//!   kelvin is not converted on a guess but reads 180-400 "C", which the
//!   scene plausibility check flags, with a warning naming kelvin. Non-finite pixels
//!   (no data) take the frame's median and are counted in a warning. pvtherm
//!   keeps frames as u16, so the values become centikelvin
//!   (0.01 K resolution, -273.15..382 C).
//! - Single-channel 16-bit TIFFs with a gain and an offset: degrees C = raw *
//!   scale + offset. FLIR's Tau 2 based drone cameras (Duo Pro R, Vue Pro R)
//!   write T-linear TIFFs at 0.04 K per count in their high-resolution mode
//!   (scale 0.04, offset -273.15), recognised from the TIFF Make and Model
//!   tags; other cameras (a FLIR Boson in T-linear mode, a Tau 2 in its
//!   0.4 K low-resolution mode) need `[source.replay] raw_scale` / `raw_offset`.
//!   Without either, a 16-bit TIFF is relative.
//! - Anything else (8-bit, colour) is not radiometric: `Ok(None)`, and the
//!   caller reads it as a grey picture.

use std::io::Cursor;

use anyhow::{bail, Context};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;
use tiff::ColorType;

use crate::decode_limit::PixelLimit;
use crate::exif::{self, Metadata};

/// degrees C = raw * `scale` + `offset` for a 16-bit TIFF.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawScale {
    pub(crate) scale: f32,
    pub(crate) offset: f32,
}

/// FLIR Tau 2 T-linear, high-resolution mode: 0.04 K per count.
pub(crate) const FLIR_TLINEAR_HIGH_RES: RawScale = RawScale {
    scale: 0.04,
    offset: -273.15,
};

/// Centikelvin: how float temperatures are stored in a u16 frame.
pub(crate) const CENTIKELVIN: RawScale = RawScale {
    scale: 0.01,
    offset: -273.15,
};

/// Camera models (TIFF Model tag, after Make "FLIR") whose 16-bit TIFFs are
/// T-linear at 0.04 K per count.
const FLIR_TLINEAR_MODELS: &[&str] = &["Duo Pro R", "Vue Pro R"];

/// What a radiometric TIFF decodes to.
#[derive(Debug, Clone)]
pub(crate) struct RadiometricTiff {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// u16 values; `scale` converts them.
    pub(crate) raw: Vec<u16>,
    /// How raw values convert to degrees C, `None` for relative values.
    pub(crate) scale: Option<RawScale>,
    /// Where the scale comes from, for the report ("float32 TIFF in degrees
    /// C", "FLIR Vue Pro R T-linear", "[source.replay] raw_scale", or why relative).
    pub(crate) source: String,
    /// Time, position and pose from the TIFF's EXIF/XMP tags.
    pub(crate) metadata: Metadata,
    /// Problems worth a warning (no-data pixels, ...).
    pub(crate) warnings: Vec<String>,
}

/// Reads a single-channel float or 16-bit TIFF as a radiometric frame;
/// `configured` is the `[source.replay] raw_scale` / `raw_offset` pair for 16-bit
/// files; `limit` bounds the size the header may claim. `Ok(None)` for TIFFs
/// that are pictures (8-bit, colour).
pub(crate) fn decode(
    bytes: &[u8],
    configured: Option<RawScale>,
    limit: PixelLimit,
) -> anyhow::Result<Option<RadiometricTiff>> {
    let mut dec = Decoder::new(Cursor::new(bytes)).context("not a valid TIFF")?;
    let (width, height) = dec.dimensions().context("TIFF has no image size")?;
    limit.check("TIFF", width.into(), height.into())?;
    let colour = dec.colortype().context("TIFF colour type")?;
    if !matches!(colour, ColorType::Gray(16 | 32 | 64)) {
        return Ok(None);
    }
    let metadata = exif::from_tiff(bytes);
    let image = dec.read_image().with_context(|| {
        format!("TIFF {width}x{height} {colour:?}: the pixel data cannot be decoded")
    })?;
    let n = width as usize * height as usize;
    let mut warnings = Vec::new();
    let (raw, scale, source) = match image {
        DecodingResult::F32(v) => {
            let v: Vec<f64> = v.into_iter().map(f64::from).collect();
            float_plane(&v, &mut warnings)
        }
        DecodingResult::F64(v) => float_plane(&v, &mut warnings),
        DecodingResult::U16(v) => {
            let (scale, source) = u16_scale(&metadata, configured);
            (v, scale, source)
        }
        other => {
            let format = dec
                .find_tag_unsigned::<u16>(Tag::SampleFormat)
                .ok()
                .flatten();
            bail!(
                "single-channel TIFF with {} samples (SampleFormat {format:?}) is not a \
                 supported radiometric TIFF: write float32 degrees C or unsigned 16-bit",
                sample_name(&other)
            )
        }
    };
    if raw.len() != n {
        bail!(
            "TIFF is {width}x{height} but holds {} values (multi-plane or cut short)",
            raw.len()
        );
    }
    Ok(Some(RadiometricTiff {
        width,
        height,
        raw,
        scale,
        source,
        metadata,
        warnings,
    }))
}

/// The scale of a 16-bit TIFF: the configured one, else FLIR's T-linear for
/// the cameras known to write it, else none (relative).
fn u16_scale(meta: &Metadata, configured: Option<RawScale>) -> (Option<RawScale>, String) {
    if let Some(s) = configured {
        return (
            Some(s),
            format!(
                "[source.replay] raw_scale = {}, raw_offset = {}",
                s.scale, s.offset
            ),
        );
    }
    let model = meta.model.as_deref().unwrap_or("");
    let flir = meta
        .make
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("FLIR"));
    if flir && FLIR_TLINEAR_MODELS.iter().any(|m| model.starts_with(m)) {
        return (
            Some(FLIR_TLINEAR_HIGH_RES),
            format!("FLIR {model} T-linear TIFF, 0.04 K per count (high-resolution mode)"),
        );
    }
    let camera = match (meta.make.as_deref(), meta.model.as_deref()) {
        (Some(make), Some(model)) => format!("{make} {model}"),
        (_, Some(model)) => model.to_string(),
        _ => "an unknown camera".into(),
    };
    (
        None,
        format!(
            "16-bit TIFF from {camera} without a known scale: values are relative \
             (set [source.replay] raw_scale and raw_offset if the camera documents them)"
        ),
    )
}

/// Float degrees C to centikelvin u16; no-data pixels take the median.
fn float_plane(v: &[f64], warnings: &mut Vec<String>) -> (Vec<u16>, Option<RawScale>, String) {
    let mut finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let median = if finite.is_empty() {
        f64::NAN
    } else {
        let mid = finite.len() / 2;
        *finite.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
    };
    if (180.0..400.0).contains(&median) {
        warnings.push(format!(
            "median value {median:.1} looks like kelvin, not degrees C: convert the TIFF to \
             degrees C (pvtherm reads float TIFFs as degrees C)"
        ));
    }
    let fill = if median.is_finite() { median } else { 0.0 };
    let (mut bad, mut clipped) = (0usize, 0usize);
    let raw = v
        .iter()
        .map(|&x| {
            let c = if x.is_finite() {
                x
            } else {
                bad += 1;
                fill
            };
            let r = ((c + 273.15) * 100.0).round();
            if !(0.0..=65535.0).contains(&r) {
                clipped += 1;
            }
            r.clamp(0.0, 65535.0) as u16
        })
        .collect();
    if bad > 0 {
        warnings.push(format!(
            "{bad} of {} pixels are not numbers (no data); they take the median {fill:.2} C",
            v.len()
        ));
    }
    if clipped > 0 {
        warnings.push(format!(
            "{clipped} pixels lie outside -273.15..382.2 C and were clipped"
        ));
    }
    (
        raw,
        Some(CENTIKELVIN),
        "float TIFF in degrees C (stored at 0.01 K)".to_string(),
    )
}

fn sample_name(r: &DecodingResult) -> &'static str {
    match r {
        DecodingResult::U8(_) => "8-bit unsigned",
        DecodingResult::U32(_) => "32-bit unsigned",
        DecodingResult::U64(_) => "64-bit unsigned",
        DecodingResult::F16(_) => "16-bit float",
        DecodingResult::I8(_) => "8-bit signed",
        DecodingResult::I16(_) => "16-bit signed",
        DecodingResult::I32(_) => "32-bit signed",
        DecodingResult::I64(_) => "64-bit signed",
        DecodingResult::U16(_) | DecodingResult::F32(_) | DecodingResult::F64(_) => "supported",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tiff::encoder::{colortype, TiffEncoder};

    /// A float32 TIFF of `values` (degrees C), as DJI's converters write it.
    pub(crate) fn float_tiff(width: u32, height: u32, values: &[f32]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        TiffEncoder::new(&mut out)
            .unwrap()
            .write_image::<colortype::Gray32Float>(width, height, values)
            .unwrap();
        out.into_inner()
    }

    /// A 16-bit TIFF with Make and Model tags, as a FLIR drone camera writes it.
    pub(crate) fn u16_tiff(
        width: u32,
        height: u32,
        values: &[u16],
        make_model: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new(&mut out).unwrap();
        let mut img = enc.new_image::<colortype::Gray16>(width, height).unwrap();
        if let Some((make, model)) = make_model {
            img.encoder().write_tag(Tag::Make, make).unwrap();
            img.encoder().write_tag(Tag::Model, model).unwrap();
        }
        img.write_data(values).unwrap();
        out.into_inner()
    }

    fn celsius(t: &RadiometricTiff, i: usize) -> f32 {
        let s = t.scale.unwrap();
        t.raw[i] as f32 * s.scale + s.offset
    }

    #[test]
    fn float_tiff_gives_its_temperatures() {
        let values = [25.0f32, 31.5, -10.25, 80.0, f32::NAN, 45.5];
        let t = decode(&float_tiff(3, 2, &values), None, PixelLimit::DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!((t.width, t.height), (3, 2));
        for (i, want) in [25.0, 31.5, -10.25, 80.0, 31.5, 45.5]
            .into_iter()
            .enumerate()
        {
            assert!(
                (celsius(&t, i) - want).abs() < 0.006,
                "pixel {i}: {}",
                celsius(&t, i)
            );
        }
        assert!(t.warnings[0].contains("1 of 6 pixels"), "{:?}", t.warnings);
        assert!(t.source.contains("degrees C"), "{}", t.source);
        // The same scene in kelvin is not guessed: it reads as given, with a warning.
        let k: Vec<f32> = [25.0f32, 31.5, 40.0, 80.0]
            .iter()
            .map(|c| c + 273.15)
            .collect();
        let t = decode(&float_tiff(2, 2, &k), None, PixelLimit::DEFAULT)
            .unwrap()
            .unwrap();
        assert!((celsius(&t, 1) - 304.65).abs() < 0.006);
        assert!(
            t.warnings[0].contains("looks like kelvin"),
            "{:?}",
            t.warnings
        );
    }

    /// FLIR Vue Pro R / Duo Pro R T-linear: 7875 counts * 0.04 - 273.15 = 41.85 C,
    /// 7000 counts = 6.85 C.
    #[test]
    fn flir_tlinear_and_configured_u16_tiffs() {
        let values = [7875u16, 7000, 7500, 8000];
        let tif = u16_tiff(2, 2, &values, Some(("FLIR", "Vue Pro R 640 13mm")));
        let t = decode(&tif, None, PixelLimit::DEFAULT).unwrap().unwrap();
        assert_eq!(t.scale, Some(FLIR_TLINEAR_HIGH_RES));
        assert!((celsius(&t, 0) - 41.85).abs() < 1e-3 && (celsius(&t, 1) - 6.85).abs() < 1e-3);
        assert_eq!(t.metadata.model.as_deref(), Some("Vue Pro R 640 13mm"));
        // A non-R Vue Pro, or no tags: relative, unless configured.
        let plain = u16_tiff(2, 2, &values, Some(("FLIR", "Vue Pro 640 9mm")));
        let t = decode(&plain, None, PixelLimit::DEFAULT).unwrap().unwrap();
        assert!(
            t.scale.is_none() && t.source.contains("FLIR Vue Pro 640 9mm"),
            "{}",
            t.source
        );
        let s = RawScale {
            scale: 0.01,
            offset: -273.15,
        };
        let t = decode(&u16_tiff(2, 2, &values, None), Some(s), PixelLimit::DEFAULT)
            .unwrap()
            .unwrap();
        assert!((celsius(&t, 0) + 194.4).abs() < 1e-3 && t.source.contains("raw_scale"));
    }

    #[test]
    fn picture_tiffs_are_not_radiometric() {
        let mut out = Cursor::new(Vec::new());
        TiffEncoder::new(&mut out)
            .unwrap()
            .write_image::<colortype::Gray8>(2, 1, &[1, 2])
            .unwrap();
        assert!(decode(&out.into_inner(), None, PixelLimit::DEFAULT)
            .unwrap()
            .is_none());
        assert!(decode(b"II*\0garbage", None, PixelLimit::DEFAULT).is_err());
    }
}
