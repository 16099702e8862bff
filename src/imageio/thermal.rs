//! The survey-camera files of [`super::load_frame`]: FLIR and DJI R-JPEGs,
//! FFF files and radiometric TIFFs, with what they say beyond their pixels
//! (which calibration applies, plausibility flags, capture time, camera
//! position and pose) in a [`Provenance`].
//!
//! Never the false-colour picture of a thermal R-JPEG as data: a JPEG is
//! read as a grey picture only when it has neither FLIR nor DJI raw data.

use super::decode_raster;
use crate::decode_limit::PixelLimit;
use crate::dji::{self, Calibration, DjiThermal};
use crate::exif::{self, Intrinsics, Metadata};
use crate::flir::{self, FlirError, RadiometricImage};
use crate::frame::{Decoded, Pixels};
use crate::jpeg;
use crate::provenance::{self, CalibrationNote, CameraView, Provenance};
use crate::radiometric_tiff::{self, RawScale};
use crate::radiometry::Radiometry;

/// A decoded image and its provenance.
pub(super) type Loaded = (Decoded, Provenance);

/// Sensor pixel pitch of FLIR cameras whose EXIF FocalLength gives the field
/// of view (data sheets: Tau 2 based 640 and 336 cores, 17 um).
const FLIR_PIXEL_PITCH_UM: &[(&str, f64)] =
    &[("XT2", 17.0), ("Vue Pro", 17.0), ("Duo Pro R", 17.0)];

/// What to say about a FLIR CSQ file: its frames are JPEG-LS compressed.
pub(super) const CSQ_UNSUPPORTED: &str = "FLIR CSQ video: its frames are JPEG-LS \
     compressed, which pvtherm does not decode; export the frames as radiometric JPEGs \
     with FLIR Thermal Studio (or FLIR Tools: \"Save frame as radiometric JPEG\"), \
     which pvtherm reads";

/// An R-JPEG (FLIR, then DJI-native) or, without raw thermal data, the
/// visible picture as grey levels with the EXIF time and position. Every
/// path checks the size it is about to decode against `limit`.
pub(super) fn decode_jpeg(bytes: &[u8], limit: PixelLimit) -> anyhow::Result<Loaded> {
    let meta = jpeg::segments(bytes)
        .map(|s| exif::from_jpeg_segments(&s))
        .unwrap_or_default();
    match flir::parse_rjpeg(bytes, limit) {
        Ok(img) => return Ok(from_flir(img, &meta)),
        Err(FlirError::NoFlirData) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(t) = dji::parse(bytes, limit)? {
        return Ok(from_dji(t));
    }
    let decoded = decode_raster(bytes, image::ImageFormat::Jpeg, limit)?;
    Ok(with_metadata(decoded, Provenance::default(), &meta, None))
}

/// A standalone FLIR FFF file.
pub(super) fn decode_fff(bytes: &[u8], limit: PixelLimit) -> anyhow::Result<Loaded> {
    Ok(from_flir(
        flir::parse_fff(bytes, limit)?,
        &Metadata::default(),
    ))
}

/// A radiometric TIFF (float degrees C, or 16-bit with a known or
/// configured scale), else the TIFF as a grey picture.
pub(super) fn decode_tiff(
    bytes: &[u8],
    raw_scale: Option<RawScale>,
    limit: PixelLimit,
) -> anyhow::Result<Loaded> {
    let Some(t) = radiometric_tiff::decode(bytes, raw_scale, limit)? else {
        let decoded = decode_raster(bytes, image::ImageFormat::Tiff, limit)?;
        let meta = exif::from_tiff(bytes);
        return Ok(with_metadata(decoded, Provenance::default(), &meta, None));
    };
    let (radiometry, calibration) = match t.scale {
        Some(s) => (
            Radiometry::Linear {
                scale: s.scale,
                offset: s.offset,
            },
            CalibrationNote {
                calibrated: true,
                kind: if t.source.starts_with("float") {
                    "float-tiff"
                } else if t.source.starts_with("[source.replay]") {
                    "configured"
                } else {
                    "flir-tlinear"
                }
                .into(),
                reason: t.source.clone(),
            },
        ),
        None => (Radiometry::Relative, relative(t.source.clone())),
    };
    let decoded = Decoded {
        width: t.width,
        height: t.height,
        pixels: Pixels::Gray16(t.raw),
        radiometry,
        captured_at: None,
    };
    let prov = Provenance {
        camera: camera_name(&t.metadata),
        calibration: Some(calibration),
        flags: t.warnings,
        ..Provenance::default()
    };
    Ok(with_metadata(decoded, prov, &t.metadata, None))
}

/// A FLIR image: Planck raw counts, or relative values for the models sold
/// without radiometry ([`provenance::is_non_radiometric_flir`]).
fn from_flir(img: RadiometricImage, meta: &Metadata) -> Loaded {
    let model = img.camera_model.trim().to_string();
    let p = img.planck;
    let mut prov = Provenance {
        camera: camera_name(meta).or_else(|| (!model.is_empty()).then(|| format!("FLIR {model}"))),
        ..Provenance::default()
    };
    let radiometry = if provenance::is_non_radiometric_flir(&model) {
        let reason = format!(
            "FLIR {model} is sold without radiometry (the radiometric models are the \
             \"R\" ones, e.g. Vue Pro R): its Planck block does not give temperatures, \
             values are relative"
        );
        prov.flags.push(reason.clone());
        prov.calibration = Some(relative(reason));
        Radiometry::Relative
    } else {
        prov.calibration = Some(CalibrationNote {
            calibrated: true,
            kind: "flir-planck".into(),
            reason: format!(
                "FLIR Planck calibration of the file (R1 {}, B {}, F {}, O {}, R2 {}), \
                 emissivity {}, distance {} m, single-path atmosphere",
                p.r1, p.b, p.f, p.o, p.r2, p.emissivity, p.object_distance
            ),
        });
        Radiometry::Planck(p)
    };
    if img.captured_at.is_some() {
        prov.time_source = Some("flir");
    }
    let decoded = Decoded {
        width: img.width,
        height: img.height,
        pixels: Pixels::Gray16(img.raw),
        radiometry,
        captured_at: img.captured_at,
    };
    let pitch = FLIR_PIXEL_PITCH_UM
        .iter()
        .find(|(m, _)| model.starts_with(m))
        .map(|(_, p)| *p);
    with_metadata(decoded, prov, meta, pitch)
}

/// A DJI-native frame: the raw plane with the calibration the model has.
fn from_dji(t: DjiThermal) -> Loaded {
    let applied = t.params.map(|p| {
        format!(
            "; the file's measurement parameters (emissivity {:.2}, distance {} m, \
             humidity {:.0} %{}) are not applied",
            p.emissivity,
            p.distance_m,
            p.humidity * 100.0,
            p.reflected_c
                .map(|r| format!(", reflected {r:.1} C"))
                .unwrap_or_default()
        )
    });
    let (radiometry, calibration) = match &t.calibration {
        Calibration::Uncorrected {
            scale,
            offset,
            reason,
        } => (
            Radiometry::Linear {
                scale: *scale,
                offset: *offset,
            },
            CalibrationNote {
                calibrated: false,
                kind: "dji-kelvin64".into(),
                reason: format!("{reason}{}", applied.unwrap_or_default()),
            },
        ),
        Calibration::Relative { reason } => (Radiometry::Relative, relative(reason.clone())),
    };
    let mut prov = Provenance {
        camera: Some(format!(
            "DJI {} ({}, APP4 layout {})",
            t.camera,
            t.model,
            t.layout.name()
        )),
        calibration: Some(calibration),
        flags: t.params.map(|p| p.problems()).unwrap_or_default(),
        ..Provenance::default()
    };
    prov.flags.extend(t.metadata.warnings.iter().cloned());
    let decoded = Decoded {
        width: t.width,
        height: t.height,
        pixels: Pixels::Gray16(t.raw),
        radiometry,
        captured_at: None,
    };
    with_metadata(decoded, prov, &t.metadata, t.pixel_pitch_um)
}

/// A relative-values note with its reason.
fn relative(reason: String) -> CalibrationNote {
    CalibrationNote {
        calibrated: false,
        kind: "relative".into(),
        reason,
    }
}

/// "Make Model" from EXIF, when the file names its camera.
fn camera_name(meta: &Metadata) -> Option<String> {
    match (meta.make.as_deref(), meta.model.as_deref()) {
        (Some(make), Some(model)) => Some(format!("{make} {model}")),
        (None, Some(model)) => Some(model.to_string()),
        _ => None,
    }
}

/// Fills the capture time (when the decoder found none) and the camera
/// position and pose from EXIF/XMP; the camera model for ground positions
/// from the EXIF focal length and the sensor's `pixel_pitch_um`.
fn with_metadata(
    mut decoded: Decoded,
    mut prov: Provenance,
    meta: &Metadata,
    pixel_pitch_um: Option<f64>,
) -> Loaded {
    if decoded.captured_at.is_none() {
        if let Some(c) = meta.captured {
            decoded.captured_at = Some(c.to_system_time());
            prov.time_source = Some(if c.utc_offset_known {
                "exif"
            } else {
                "exif (local time taken as UTC)"
            });
        }
    }
    if let Some(p) = &meta.position {
        let intrinsics = meta
            .focal_length_mm
            .zip(pixel_pitch_um)
            .map(|(f, pitch)| Intrinsics::from_focal(f, pitch, decoded.width, decoded.height));
        prov.camera_position = Some(CameraView::new(p, &meta.pose, intrinsics));
    }
    (decoded, prov)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::UNIX_EPOCH;

    use crate::analysis::{AnalysisConfig, TemperatureMeter};
    use crate::frame::Frame;
    use crate::geometry::BBox;
    use crate::imageio::{load_frame, load_frame_with, LoadOptions};
    use crate::inspect::Inspector;
    use crate::messages::{DetectionsMessage, ModuleReport};
    use crate::model::ModelConfig;

    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    /// `bytes` written as `name` in a fresh temporary folder.
    fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn note(f: &Frame) -> &CalibrationNote {
        f.provenance.calibration.as_ref().expect("calibration note")
    }

    #[test]
    fn dji_fixtures_load_as_raw_planes_with_their_calibration() {
        let h20t = load_frame(&fixture("dji/H20T_a.jpg"), 0).unwrap();
        assert_eq!((h20t.width(), h20t.height()), (640, 512));
        // The raw plane, not the palette picture: 16-bit values 18116..20518.
        let Pixels::Gray16(px) = h20t.pixels() else {
            panic!("palette picture read as data")
        };
        assert_eq!(
            (px.iter().min(), px.iter().max()),
            (Some(&18116), Some(&20518))
        );
        assert_eq!(
            h20t.radiometry,
            Radiometry::Linear {
                scale: 1.0 / 64.0,
                offset: -273.15
            }
        );
        let n = note(&h20t);
        assert!(!n.calibrated && n.kind == "dji-kelvin64", "{n:?}");
        assert!(
            n.reason
                .contains("emissivity 1.00, distance 5 m, humidity 70 %"),
            "{}",
            n.reason
        );
        assert!(
            h20t.provenance.flags.is_empty(),
            "{:?}",
            h20t.provenance.flags
        );
        // 2021:05:28 10:33:46 from EXIF, not the file's modification time.
        let t = h20t
            .captured_at
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(t, 1_622_198_026);
        assert_eq!(
            h20t.provenance.time_source,
            Some("exif (local time taken as UTC)")
        );
        let view = h20t.provenance.camera_position.unwrap();
        assert_eq!(
            (view.latitude, view.relative_altitude),
            (40.5637811, Some(16.508))
        );

        let m3t = load_frame(&fixture("dji/M3T.jpg"), 0).unwrap();
        assert_eq!(note(&m3t).kind, "dji-kelvin64");
        assert!(m3t
            .provenance
            .camera
            .as_deref()
            .unwrap()
            .contains("ThermalParams2"));

        let xts = load_frame(&fixture("dji/XTS.jpg"), 0).unwrap();
        assert_eq!(xts.radiometry, Radiometry::Relative);
        let n = note(&xts);
        assert!(
            !n.calibrated && n.kind == "relative" && n.reason.contains("XT S"),
            "{n:?}"
        );
    }

    /// The H20T file with its APP3 raw plane replaced by `plane` (640x512).
    fn dji_with_plane(plane: &[u16]) -> Vec<u8> {
        let src = std::fs::read(fixture("dji/H20T_a.jpg")).unwrap();
        let segments = jpeg::segments(&src).unwrap();
        let app3: Vec<_> = segments.iter().filter(|s| s.marker == 0xE3).collect();
        let last = app3.last().unwrap();
        let (start, end) = (app3[0].offset, last.offset + 4 + last.payload.len());
        let bytes: Vec<u8> = plane.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = src[..start].to_vec();
        for chunk in bytes.chunks(65_532) {
            out.extend_from_slice(&[0xFF, 0xE3]);
            out.extend_from_slice(&((chunk.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&src[end..]);
        out
    }

    fn modules_of(inspector: &mut Inspector, frame: &Frame) -> Vec<ModuleReport> {
        let a = inspector.inspect(frame, None).unwrap().analysis;
        DetectionsMessage::new("t".into(), "local", frame, inspector.model_info(), 0.0, &a).modules
    }

    fn bbox_iou(a: &BBox, b: &BBox) -> f32 {
        a.iou(b)
    }

    /// No public DJI file shows PV modules, so a real PV frame (the XT2's
    /// 001R, decoded with its Planck constants) is written as kelvin x 64 into
    /// the H20T container: the detector must find the same modules on the DJI
    /// raw plane and report the same temperatures (to the 1/64 K step), marked
    /// not calibrated; the palette picture of the H20T file is never used.
    #[test]
    fn detector_runs_on_a_dji_raw_plane() {
        let flir_frame = load_frame(&fixture("pv/images/001R.jpg"), 0).unwrap();
        let lut = flir_frame.radiometry.celsius_lut().unwrap();
        let Pixels::Gray16(raw) = flir_frame.pixels() else {
            panic!()
        };
        let plane: Vec<u16> = raw
            .iter()
            .map(|&r| ((lut.get(r).unwrap() as f64 + 273.15) * 64.0).round() as u16)
            .collect();
        let (_dir, path) = temp_file("DJI_PV_T.jpg", &dji_with_plane(&plane));
        let dji_frame = load_frame(&path, 1).unwrap();
        assert_eq!(note(&dji_frame).kind, "dji-kelvin64");

        let mut inspector =
            Inspector::new(&ModelConfig::default(), AnalysisConfig::default()).unwrap();
        let flir_modules = modules_of(&mut inspector, &flir_frame);
        let dji_modules = modules_of(&mut inspector, &dji_frame);
        assert!(flir_modules.len() >= 10, "{} modules", flir_modules.len());
        let mut meter = TemperatureMeter::new();
        let mut matched = 0;
        for d in &dji_modules {
            let t = d.temperature.as_ref().unwrap();
            assert!(
                (15.0..70.0).contains(&t.max),
                "module {}: {} C",
                d.index,
                t.max
            );
            let Some(f) = flir_modules
                .iter()
                .find(|f| bbox_iou(&f.bbox, &d.bbox) > 0.7)
            else {
                continue;
            };
            // On the same outline (the FLIR one) both frames cover the same
            // pixels: only the plane's 1/64 K steps may differ.
            let on_flir = meter.measure(&flir_frame, &flir_frame.radiometry, &f.quad);
            let on_dji = meter.measure(&dji_frame, &dji_frame.radiometry, &f.quad);
            let (ft, t) = (on_flir.unwrap(), on_dji.unwrap());
            assert!((ft.max - t.max).abs() < 0.02, "{} vs {}", ft.max, t.max);
            assert!(
                (ft.median - t.median).abs() < 0.02,
                "{} vs {}",
                ft.median,
                t.median
            );
            matched += 1;
        }
        assert!(
            matched * 10 >= flir_modules.len() * 9,
            "{matched} of {} matched",
            flir_modules.len()
        );

        // The report says which calibration applies and where each module is.
        let a = inspector.inspect(&dji_frame, None).unwrap().analysis;
        let msg = DetectionsMessage::new(
            "t".into(),
            "local",
            &dji_frame,
            inspector.model_info(),
            0.0,
            &a,
        );
        let json: serde_json::Value = serde_json::to_value(&msg).unwrap();
        let frame = &json["frame"];
        assert_eq!(frame["calibration"]["calibrated"], false);
        assert_eq!(frame["calibration"]["kind"], "dji-kelvin64");
        assert!(frame["camera"].as_str().unwrap().contains("Zenmuse H20T"));
        assert_eq!(frame["camera_position"]["gimbal_pitch"], -10.5);
        let grounded: Vec<_> = json["modules"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["ground_position"]["latitude"].as_f64())
            .collect();
        assert!(!grounded.is_empty());
        for lat in grounded {
            // At most 16.5 m / tan(5 deg) = 189 m from the camera (rays less than
            // 5 deg below the horizon get no position), i.e. 0.0017 deg.
            assert!((lat - 40.5637811).abs() < 0.0018, "{lat}");
        }
    }

    #[test]
    fn radiometric_tiffs_give_their_temperatures() {
        let values: Vec<f32> = (0..64).map(|i| 20.0 + i as f32 * 0.5).collect();
        let tif = radiometric_tiff::tests::float_tiff(8, 8, &values);
        let (_d, path) = temp_file("dji_sdk_export.tiff", &tif);
        let f = load_frame(&path, 0).unwrap();
        assert_eq!(note(&f).kind, "float-tiff");
        assert!((f.radiometry.to_celsius(f.pixels().get(63)).unwrap() - 51.5).abs() < 0.006);

        let counts: Vec<u16> = (0..64).map(|i| 7_500 + i).collect();
        let tif = radiometric_tiff::tests::u16_tiff(8, 8, &counts, None);
        let (_d, path) = temp_file("boson.tiff", &tif);
        assert_eq!(
            load_frame(&path, 0).unwrap().radiometry,
            Radiometry::Relative
        );
        let options = LoadOptions {
            raw_scale: Some((0.04, -273.15)),
            ..LoadOptions::default()
        };
        let f = load_frame_with(&path, 0, &options).unwrap();
        assert_eq!(note(&f).kind, "configured");
        // 7500 * 0.04 - 273.15 = 26.85 C.
        assert!((f.radiometry.to_celsius(f.pixels().get(0)).unwrap() - 26.85).abs() < 1e-3);

        // A scene at 450 C is flagged, and still a frame.
        let hot = radiometric_tiff::tests::float_tiff(8, 8, &[450.0; 64]);
        let (_d, path) = temp_file("hot.tiff", &hot);
        let f = load_frame(&path, 0).unwrap();
        assert!(
            f.provenance
                .flags
                .iter()
                .any(|m| m.contains("outside -60..200 C")),
            "{:?}",
            f.provenance.flags
        );
    }

    #[test]
    fn damaged_planck_block_and_csq_are_refused_with_the_reason() {
        let mut bytes = std::fs::read(fixture("pv/images/001R.jpg")).unwrap();
        // PlanckB 1428.0 as a little-endian f32 in the CameraInfo record.
        let at = bytes
            .windows(4)
            .position(|w| w == [0x00, 0x80, 0xB2, 0x44])
            .unwrap();
        bytes[at + 3] = 0x48;
        let (_d, path) = temp_file("001R_damaged.jpg", &bytes);
        let err = format!("{:#}", load_frame(&path, 0).unwrap_err());
        assert!(
            err.contains("001R_damaged.jpg") && err.contains("PlanckB 365568"),
            "{err}"
        );
        assert!(err.contains("damaged"), "{err}");

        let (_d, path) = temp_file("flight.csq", b"FFF\0CSQ frames");
        let err = format!("{:#}", load_frame(&path, 0).unwrap_err());
        assert!(
            err.contains("flight.csq") && err.contains("JPEG-LS"),
            "{err}"
        );
        assert!(err.contains("radiometric JPEGs"), "{err}");
    }
}
