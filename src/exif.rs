//! Capture time, position and camera pose from a survey image's own metadata
//! (EXIF and DJI's `drone-dji` XMP), and the flat-ground projection that turns
//! a pixel into an estimated ground position.
//!
//! Sources, in order of preference:
//! - time: EXIF `DateTimeOriginal` (0x9003) + `SubSecTimeOriginal` (0x9291) +
//!   `OffsetTimeOriginal` (0x9011). Without an offset tag the time is read as
//!   UTC and [`CaptureTime::utc_offset_known`] is false: DJI writes the remote
//!   controller's local time without an offset, so such a time can be off by
//!   the site's UTC offset (the order of frames and their spacing stay right).
//! - position: XMP `drone-dji:GpsLatitude` / `GpsLongitude` (or the misspelt
//!   `GpsLongtitude` of older firmware), which carry more digits than EXIF,
//!   else the EXIF GPS IFD; altitudes from XMP `AbsoluteAltitude` (metres above
//!   sea level, or the ellipsoid on some firmware) and `RelativeAltitude`
//!   (metres above the take-off point), else EXIF `GPSAltitude`.
//! - pose: XMP `GimbalYawDegree` / `GimbalPitchDegree` / `GimbalRollDegree`
//!   and `FlightYawDegree`, in degrees; gimbal yaw is the camera's heading
//!   from true north, clockwise; gimbal pitch 0 is horizontal, -90 straight down.
//!
//! Malformed metadata never fails a frame: a field that cannot be read is
//! `None`, and [`Metadata::warnings`] says why.

use crate::jpeg::Segment;

/// Everything the metadata says about when, where and how a frame was taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metadata {
    /// EXIF Make (IFD0 0x010F), trimmed.
    pub(crate) make: Option<String>,
    /// EXIF Model (IFD0 0x0110), trimmed: what selects a camera's layout.
    pub(crate) model: Option<String>,
    /// Capture time from the EXIF date tags.
    pub(crate) captured: Option<CaptureTime>,
    /// Where the drone (camera) was.
    pub(crate) position: Option<CameraPosition>,
    /// How the camera pointed.
    pub(crate) pose: Pose,
    /// EXIF FocalLength (0x920A) in millimetres, for the camera model.
    pub(crate) focal_length_mm: Option<f64>,
    /// Metadata that was present but could not be read, for the log.
    pub(crate) warnings: Vec<String>,
}

/// A capture instant from EXIF.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CaptureTime {
    /// Seconds since the Unix epoch, with the sub-second part.
    pub(crate) unix_seconds: f64,
    /// Whether an OffsetTimeOriginal tag gave the UTC offset; when false the
    /// local time was taken as UTC (see the module doc).
    pub(crate) utc_offset_known: bool,
}

impl CaptureTime {
    /// As a [`std::time::SystemTime`] (times before 1970 are clamped to it).
    pub(crate) fn to_system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(self.unix_seconds.max(0.0))
    }
}

/// The camera's geographic position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CameraPosition {
    /// WGS-84 latitude in degrees, north positive.
    pub(crate) latitude_deg: f64,
    /// WGS-84 longitude in degrees, east positive.
    pub(crate) longitude_deg: f64,
    /// Altitude above sea level in metres, when known.
    pub(crate) absolute_altitude_m: Option<f64>,
    /// Height above the take-off point in metres (DJI XMP), when known: the
    /// height used for the flat-ground projection.
    pub(crate) relative_altitude_m: Option<f64>,
}

/// Camera and aircraft angles in degrees; each `None` when not recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Pose {
    pub(crate) gimbal_yaw_deg: Option<f64>,
    pub(crate) gimbal_pitch_deg: Option<f64>,
    pub(crate) gimbal_roll_deg: Option<f64>,
    pub(crate) flight_yaw_deg: Option<f64>,
}

/// Reads the metadata of a JPEG from its segments: the `Exif\0\0` APP1 (a
/// TIFF structure) and the XMP APP1.
pub(crate) fn from_jpeg_segments(segments: &[Segment<'_>]) -> Metadata {
    let mut meta = Metadata::default();
    for s in segments.iter().filter(|s| s.marker == 0xE1) {
        if let Some(tiff) = s.payload.strip_prefix(b"Exif\0\0") {
            if let Err(e) = read_tiff_tags(tiff, &mut meta) {
                meta.warnings
                    .push(format!("EXIF in {} at byte {}: {e}", s.name(), s.offset));
            }
        } else if let Some(xmp) = s.payload.strip_prefix(b"http://ns.adobe.com/xap/1.0/\0") {
            read_xmp(&String::from_utf8_lossy(xmp), &mut meta);
        }
    }
    meta
}

/// Reads the metadata of a TIFF file: its IFD0 tags, EXIF and GPS IFDs and an
/// XMP packet in tag 700 (what DJI's and other converters copy into the
/// temperature TIFFs they write).
pub(crate) fn from_tiff(tiff: &[u8]) -> Metadata {
    let mut meta = Metadata::default();
    if let Err(e) = read_tiff_tags(tiff, &mut meta) {
        meta.warnings.push(format!("TIFF tags: {e}"));
    }
    meta
}

/// EXIF tag numbers used here.
mod tag {
    pub(crate) const MAKE: u16 = 0x010F;
    pub(crate) const MODEL: u16 = 0x0110;
    pub(crate) const XMP: u16 = 700;
    pub(crate) const EXIF_IFD: u16 = 0x8769;
    pub(crate) const GPS_IFD: u16 = 0x8825;
    pub(crate) const DATE_TIME_ORIGINAL: u16 = 0x9003;
    pub(crate) const OFFSET_TIME_ORIGINAL: u16 = 0x9011;
    pub(crate) const SUB_SEC_TIME_ORIGINAL: u16 = 0x9291;
    pub(crate) const FOCAL_LENGTH: u16 = 0x920A;
    pub(crate) const GPS_LATITUDE_REF: u16 = 1;
    pub(crate) const GPS_LATITUDE: u16 = 2;
    pub(crate) const GPS_LONGITUDE_REF: u16 = 3;
    pub(crate) const GPS_LONGITUDE: u16 = 4;
    pub(crate) const GPS_ALTITUDE_REF: u16 = 5;
    pub(crate) const GPS_ALTITUDE: u16 = 6;
}

/// A bounds-checked view of a TIFF structure in its byte order.
struct Tiff<'a> {
    data: &'a [u8],
    little: bool,
}

/// One IFD entry: tag, type, count and the bytes of its value.
struct Entry<'a> {
    tag: u16,
    kind: u16,
    count: usize,
    value: &'a [u8],
}

impl<'a> Tiff<'a> {
    fn new(data: &'a [u8]) -> Result<Self, String> {
        let little = match data.get(..4) {
            Some(b"II*\0") => true,
            Some(b"MM\0*") => false,
            _ => return Err("no TIFF header (II*\\0 or MM\\0*)".into()),
        };
        Ok(Tiff { data, little })
    }

    fn u16(&self, off: usize) -> Result<u16, String> {
        let b = self.bytes(off, 2)?;
        Ok(if self.little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    fn u32(&self, off: usize) -> Result<u32, String> {
        let b = self.bytes(off, 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn bytes(&self, off: usize, len: usize) -> Result<&'a [u8], String> {
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or_else(|| {
                format!(
                    "offset {off}+{len} is past the end ({} bytes)",
                    self.data.len()
                )
            })
    }

    /// The entries of the IFD at `off`. Values of four bytes or less sit in
    /// the entry itself, longer ones at the offset it holds.
    fn ifd(&self, off: usize) -> Result<Vec<Entry<'a>>, String> {
        let n = self.u16(off)? as usize;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let e = off + 2 + 12 * i;
            let (tag, kind, count) = (self.u16(e)?, self.u16(e + 2)?, self.u32(e + 4)? as usize);
            let size = match kind {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 => 8,
                _ => continue,
            };
            let Some(len) = count.checked_mul(size) else {
                return Err(format!(
                    "tag 0x{tag:04x} at byte {e}: count {count} too large"
                ));
            };
            let value = if len <= 4 {
                self.bytes(e + 8, len)?
            } else {
                self.bytes(self.u32(e + 8)? as usize, len)
                    .map_err(|m| format!("tag 0x{tag:04x} at byte {e}: {m}"))?
            };
            out.push(Entry {
                tag,
                kind,
                count,
                value,
            });
        }
        Ok(out)
    }

    fn entry_u32(&self, e: &Entry<'_>) -> Option<u32> {
        let v = Tiff {
            data: e.value,
            little: self.little,
        };
        match e.kind {
            3 => v.u16(0).ok().map(u32::from),
            4 | 13 => v.u32(0).ok(),
            _ => None,
        }
    }

    /// The unsigned rationals of a RATIONAL entry, as f64.
    fn rationals(&self, e: &Entry<'_>) -> Vec<f64> {
        let v = Tiff {
            data: e.value,
            little: self.little,
        };
        if e.kind != 5 {
            return Vec::new();
        }
        (0..e.count)
            .filter_map(|i| {
                let (n, d) = (v.u32(8 * i).ok()?, v.u32(8 * i + 4).ok()?);
                (d != 0).then(|| n as f64 / d as f64)
            })
            .collect()
    }
}

/// The text of an ASCII entry without its trailing NULs and spaces.
fn ascii(e: &Entry<'_>) -> Option<String> {
    let s = String::from_utf8_lossy(e.value);
    let s = s.trim_end_matches(['\0', ' ']).trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Fills `meta` from IFD0 and the EXIF and GPS IFDs it points to.
fn read_tiff_tags(data: &[u8], meta: &mut Metadata) -> Result<(), String> {
    let t = Tiff::new(data)?;
    let ifd0 = t.ifd(t.u32(4)? as usize)?;
    let (mut exif, mut gps) = (Vec::new(), Vec::new());
    for e in &ifd0 {
        match e.tag {
            tag::MAKE => meta.make = ascii(e),
            tag::MODEL => meta.model = ascii(e),
            tag::XMP => read_xmp(&String::from_utf8_lossy(e.value), meta),
            tag::EXIF_IFD => exif = t.ifd(t.entry_u32(e).unwrap_or(0) as usize)?,
            tag::GPS_IFD => gps = t.ifd(t.entry_u32(e).unwrap_or(0) as usize)?,
            _ => {}
        }
    }
    let find = |ifd: &[Entry<'_>], tag: u16| ifd.iter().position(|e| e.tag == tag);
    let text = |ifd: &[Entry<'_>], tag: u16| find(ifd, tag).and_then(|i| ascii(&ifd[i]));
    if let Some(dt) = text(&exif, tag::DATE_TIME_ORIGINAL) {
        let sub = text(&exif, tag::SUB_SEC_TIME_ORIGINAL);
        let offset = text(&exif, tag::OFFSET_TIME_ORIGINAL);
        match parse_exif_time(&dt, sub.as_deref(), offset.as_deref()) {
            Some(c) => meta.captured = Some(c),
            None => meta.warnings.push(format!(
                "DateTimeOriginal {dt:?} is not a date (YYYY:MM:DD HH:MM:SS)"
            )),
        }
    }
    if let Some(i) = find(&exif, tag::FOCAL_LENGTH) {
        meta.focal_length_mm = t.rationals(&exif[i]).first().copied().filter(|f| *f > 0.0);
    }
    let dms = |tag: u16| {
        let r = find(&gps, tag).map(|i| t.rationals(&gps[i]))?;
        (r.len() == 3).then(|| r[0] + r[1] / 60.0 + r[2] / 3600.0)
    };
    let sign = |tag: u16, negative: &str| match text(&gps, tag) {
        Some(r) if r.eq_ignore_ascii_case(negative) => -1.0,
        _ => 1.0,
    };
    if let (Some(lat), Some(lon)) = (dms(tag::GPS_LATITUDE), dms(tag::GPS_LONGITUDE)) {
        let below_sea =
            find(&gps, tag::GPS_ALTITUDE_REF).is_some_and(|i| gps[i].value.first() == Some(&1));
        let alt = find(&gps, tag::GPS_ALTITUDE)
            .and_then(|i| t.rationals(&gps[i]).first().copied())
            .map(|a| if below_sea { -a } else { a });
        let exif_pos = CameraPosition {
            latitude_deg: lat * sign(tag::GPS_LATITUDE_REF, "S"),
            longitude_deg: lon * sign(tag::GPS_LONGITUDE_REF, "W"),
            absolute_altitude_m: alt,
            relative_altitude_m: None,
        };
        merge_position(meta, exif_pos, false);
    }
    Ok(())
}

/// Combines a position with the one already read: `preferred` values (XMP)
/// replace the others field by field, the others only fill gaps.
fn merge_position(meta: &mut Metadata, p: CameraPosition, preferred: bool) {
    meta.position = Some(match meta.position {
        None => p,
        Some(old) => {
            let (hi, lo) = if preferred { (p, old) } else { (old, p) };
            CameraPosition {
                latitude_deg: hi.latitude_deg,
                longitude_deg: hi.longitude_deg,
                absolute_altitude_m: hi.absolute_altitude_m.or(lo.absolute_altitude_m),
                relative_altitude_m: hi.relative_altitude_m.or(lo.relative_altitude_m),
            }
        }
    });
}

/// Parses "YYYY:MM:DD HH:MM:SS" (some DJI firmware writes '-' in the date),
/// the SubSec digits ("481" = 0.481 s) and an offset "+HH:MM".
fn parse_exif_time(dt: &str, subsec: Option<&str>, offset: Option<&str>) -> Option<CaptureTime> {
    let num = |s: &str| s.trim().parse::<i64>().ok();
    let (date, time) = dt.trim().split_once([' ', 'T'])?;
    let d: Vec<i64> = date.split([':', '-']).map(num).collect::<Option<_>>()?;
    let t: Vec<i64> = time.get(..8)?.split(':').map(num).collect::<Option<_>>()?;
    let ([y, mo, da], [h, mi, s]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    if !(1..=12).contains(mo) || !(1..=31).contains(da) || *h > 23 || *mi > 59 || *s > 60 {
        return None;
    }
    let mut secs = (days_from_civil(*y, *mo, *da) * 86_400 + h * 3600 + mi * 60 + s) as f64;
    if let Some(sub) = subsec
        .map(str::trim)
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
    {
        if let Ok(v) = format!("0.{sub}").parse::<f64>() {
            secs += v;
        }
    }
    let offset_s = offset.and_then(|o| {
        let o = o.trim();
        let sign = match o.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (hh, mm) = o[1..].split_once(':')?;
        Some(sign * (num(hh)? * 3600 + num(mm)? * 60))
    });
    Some(CaptureTime {
        unix_seconds: secs - offset_s.unwrap_or(0) as f64,
        utc_offset_known: offset_s.is_some(),
    })
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's civil-days algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The XML prefixes bound to DJI's namespaces: `drone-dji`
/// (`http://www.dji.com/drone-dji/1.0/`) on current firmware, `DJI`
/// (`http://www.dji.com`) on the Zenmuse XT S and other older cameras.
fn dji_prefixes(xmp: &str) -> Vec<&str> {
    let mut out: Vec<&str> = xmp
        .split("xmlns:")
        .skip(1)
        .filter_map(|decl| {
            let (prefix, rest) = decl.split_once('=')?;
            let uri = rest.trim_start_matches(['"', '\'']);
            uri.starts_with("http://www.dji.com")
                .then_some(prefix.trim())
        })
        .collect();
    if out.is_empty() {
        out.push("drone-dji");
    }
    out.dedup();
    out
}

/// The value of a DJI XMP property `name` under `prefix`, written as an
/// attribute (`drone-dji:Name="+1.5"`) or as an element (`<drone-dji:Name>+1.5<`).
fn xmp_value(xmp: &str, prefix: &str, name: &str) -> Option<f64> {
    let key = format!("{prefix}:{name}");
    let mut rest = xmp;
    while let Some(i) = rest.find(&key) {
        let after = &rest[i + key.len()..];
        let value = if let Some(v) = after.strip_prefix("=\"") {
            v.split('"').next()
        } else if let Some(v) = after.strip_prefix('>') {
            v.split('<').next()
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.trim().trim_start_matches('+').parse::<f64>().ok()) {
            return v.is_finite().then_some(v);
        }
        rest = after;
    }
    None
}

/// Fills position and pose from DJI's `drone-dji` XMP properties.
fn read_xmp(xmp: &str, meta: &mut Metadata) {
    let prefixes = dji_prefixes(xmp);
    let v = |name: &str| prefixes.iter().find_map(|p| xmp_value(xmp, p, name));
    let lon = v("GpsLongitude").or_else(|| v("GpsLongtitude"));
    let (abs, rel) = (v("AbsoluteAltitude"), v("RelativeAltitude"));
    match (v("GpsLatitude"), lon) {
        (Some(lat), Some(lon)) if (lat, lon) != (0.0, 0.0) => merge_position(
            meta,
            CameraPosition {
                latitude_deg: lat,
                longitude_deg: lon,
                absolute_altitude_m: abs,
                relative_altitude_m: rel,
            },
            true,
        ),
        // Altitudes without an XMP position still complete the EXIF one.
        _ => {
            if let Some(p) = meta.position.as_mut() {
                p.absolute_altitude_m = abs.or(p.absolute_altitude_m);
                p.relative_altitude_m = rel.or(p.relative_altitude_m);
            } else if rel.is_some() {
                meta.warnings
                    .push("XMP has a RelativeAltitude but no GPS position".into());
            }
        }
    }
    let pose = &mut meta.pose;
    pose.gimbal_yaw_deg = v("GimbalYawDegree").or(pose.gimbal_yaw_deg);
    pose.gimbal_pitch_deg = v("GimbalPitchDegree").or(pose.gimbal_pitch_deg);
    pose.gimbal_roll_deg = v("GimbalRollDegree").or(pose.gimbal_roll_deg);
    pose.flight_yaw_deg = v("FlightYawDegree").or(pose.flight_yaw_deg);
}

/// A pinhole camera: focal length in pixels and the principal point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Intrinsics {
    pub(crate) focal_px: f64,
    pub(crate) cx: f64,
    pub(crate) cy: f64,
}

impl Intrinsics {
    /// From the lens focal length and the sensor's pixel pitch (what EXIF
    /// and the data sheet give), principal point at the image centre.
    pub(crate) fn from_focal(focal_mm: f64, pixel_pitch_um: f64, width: u32, height: u32) -> Self {
        Self::centred(focal_mm * 1000.0 / pixel_pitch_um, width, height)
    }

    fn centred(focal_px: f64, width: u32, height: u32) -> Self {
        Intrinsics {
            focal_px,
            cx: width as f64 / 2.0,
            cy: height as f64 / 2.0,
        }
    }
}

/// The least angle below the horizon at which a line of sight is projected.
pub(crate) const MIN_DEPRESSION_DEG: f64 = 5.0;

/// Where a pixel's line of sight meets the ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroundPoint {
    pub(crate) latitude_deg: f64,
    pub(crate) longitude_deg: f64,
    /// Metres north and east of the camera's position.
    pub(crate) north_m: f64,
    pub(crate) east_m: f64,
}

/// Projects pixel (`u`, `v`) (pixel centres at +0.5) onto flat ground
/// `height_m` below the camera, for a camera at `position` pointing with
/// gimbal yaw/pitch/roll `pose` (degrees, see the module doc).
///
/// Assumptions: a pinhole camera without lens distortion, principal point
/// at the image centre; the ground is a horizontal plane at the take-off
/// point's height (`RelativeAltitude` is the height above take-off, not
/// above the ground under the camera); the gimbal angles are the camera's
/// attitude in the local north-east-down frame (yaw from true north); a flat
/// Earth over the projected distance (WGS-84 radii of curvature at the
/// camera's latitude).
///
/// Expected error, for the nadir-looking survey flights pvtherm is for
/// (pitch about -90, 20-40 m): the GPS fix (1-3 m without RTK, a few cm with),
/// plus terrain: a ground `dh` metres above or below the take-off point moves
/// a point seen at angle `a` off nadir by `dh * tan(a)` and scales offsets by
/// `dh / height`; a gimbal angle error of 1 degree moves it by about
/// `height * 0.0175 / cos^2(a)` (0.5 m at 30 m). Together typically 1-5 m;
/// for oblique views (pitch above -45) errors grow quickly with distance, and
/// a ray less than [`MIN_DEPRESSION_DEG`] below the horizon has no ground
/// point (`None`): at 5 degrees a 1 degree pitch error already moves the point
/// by a fifth of its distance.
pub(crate) fn project_to_ground(
    u: f64,
    v: f64,
    cam: &Intrinsics,
    position: &CameraPosition,
    pose: &Pose,
    height_m: f64,
) -> Option<GroundPoint> {
    let (yaw, pitch, roll) = (
        pose.gimbal_yaw_deg?.to_radians(),
        pose.gimbal_pitch_deg?.to_radians(),
        pose.gimbal_roll_deg.unwrap_or(0.0).to_radians(),
    );
    if !(height_m.is_finite() && height_m > 0.0 && cam.focal_px > 0.0) {
        return None;
    }
    // Camera axes in north-east-down: forward, right and image-down.
    let forward = [
        pitch.cos() * yaw.cos(),
        pitch.cos() * yaw.sin(),
        -pitch.sin(),
    ];
    let right0 = [-yaw.sin(), yaw.cos(), 0.0];
    let down0 = cross(forward, right0);
    let (cr, sr) = (roll.cos(), roll.sin());
    let right: [f64; 3] = std::array::from_fn(|i| right0[i] * cr + down0[i] * sr);
    let down: [f64; 3] = std::array::from_fn(|i| down0[i] * cr - right0[i] * sr);
    let (x, y) = ((u - cam.cx) / cam.focal_px, (v - cam.cy) / cam.focal_px);
    let ray: [f64; 3] = std::array::from_fn(|i| forward[i] + x * right[i] + y * down[i]);
    let norm = ray.iter().map(|c| c * c).sum::<f64>().sqrt();
    if ray[2] / norm < MIN_DEPRESSION_DEG.to_radians().sin() {
        return None;
    }
    let t = height_m / ray[2];
    let (north_m, east_m) = (t * ray[0], t * ray[1]);
    // WGS-84 meridional and prime-vertical radii of curvature.
    const A: f64 = 6_378_137.0;
    const E2: f64 = 6.694_379_990_14e-3;
    let lat = position.latitude_deg.to_radians();
    let w = (1.0 - E2 * lat.sin().powi(2)).sqrt();
    let (m, n) = (A * (1.0 - E2) / w.powi(3), A / w);
    Some(GroundPoint {
        latitude_deg: position.latitude_deg + (north_m / m).to_degrees(),
        longitude_deg: position.longitude_deg + (east_m / (n * lat.cos())).to_degrees(),
        north_m,
        east_m,
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dji")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn meta_of(name: &str) -> Metadata {
        let bytes = fixture(name);
        from_jpeg_segments(&crate::jpeg::segments(&bytes).unwrap())
    }

    #[test]
    fn h20t_time_gps_and_xmp_pose() {
        let m = meta_of("H20T_a.jpg");
        assert_eq!(m.make.as_deref(), Some("DJI"));
        assert_eq!(m.model.as_deref(), Some("ZH20T"));
        // 2021:05:28 10:33:46, no offset tag: taken as UTC.
        let c = m.captured.unwrap();
        assert_eq!(c.unix_seconds, 1_622_198_026.0);
        assert!(!c.utc_offset_known);
        let p = m.position.unwrap();
        // XMP drone-dji:GpsLatitude="+40.5637811" GpsLongitude="-79.7649628".
        assert_eq!((p.latitude_deg, p.longitude_deg), (40.5637811, -79.7649628));
        assert_eq!(p.absolute_altitude_m, Some(221.404));
        assert_eq!(p.relative_altitude_m, Some(16.508));
        assert_eq!(m.pose.gimbal_yaw_deg, Some(32.5));
        assert_eq!(m.pose.gimbal_pitch_deg, Some(-10.5));
        assert_eq!(m.pose.gimbal_roll_deg, Some(0.0));
        assert_eq!(m.pose.flight_yaw_deg, Some(30.3));
        assert_eq!(m.focal_length_mm, Some(13.5));
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }

    #[test]
    fn xts_exif_gps_south_of_sea_level_and_subseconds() {
        let m = meta_of("XTS.jpg");
        assert_eq!(m.model.as_deref(), Some("XT S"));
        // 2019:12:25 16:10:22 + SubSecTimeOriginal "657".
        let c = m.captured.unwrap();
        assert!((c.unix_seconds - 1_577_290_222.657).abs() < 1e-6, "{c:?}");
        let p = m.position.unwrap();
        // EXIF GPS only (36 deg 43' 46.90" N, 119 deg 50' 36.03" E, 29.4 m below
        // sea level), the XMP adds the relative altitude.
        assert!((p.latitude_deg - 36.729_694_027_8).abs() < 1e-7, "{p:?}");
        assert!((p.longitude_deg - 119.843_341_527_8).abs() < 1e-7, "{p:?}");
        assert_eq!(p.absolute_altitude_m, Some(-29.44));
        assert_eq!(p.relative_altitude_m, Some(37.7));
        assert_eq!(m.pose.gimbal_pitch_deg, Some(19.9));
    }

    #[test]
    fn offsets_and_dash_dates() {
        let t = parse_exif_time("2020-06-23 15:17:15", None, Some("+02:00")).unwrap();
        // 2020-06-23 15:17:15 is 1 592 925 435 s as UTC; at +02:00 two hours earlier.
        assert_eq!(t.unix_seconds, 1_592_925_435.0 - 7200.0);
        assert!(t.utc_offset_known);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert!(parse_exif_time("    :  :     :  :  ", None, None).is_none());
        assert!(parse_exif_time("2021:13:01 00:00:00", None, None).is_none());
    }

    /// The H20T fixture's camera: 13.5 mm lens, 12 um pixels, 640x512, at
    /// 16.508 m above take-off, gimbal yaw 32.5, pitch -10.5, roll 0.
    ///
    /// Hand computation. Focal length in pixels f = 13.5 mm / 12 um = 1125.
    /// Centre pixel (320, 256): the optical axis, 10.5 deg below the horizon,
    /// meets the ground at a horizontal distance 16.508 / tan(10.5 deg)
    /// = 16.508 / 0.185339 = 89.069 m along the heading 32.5 deg:
    /// north 89.069 * cos 32.5 = 75.120 m, east 89.069 * sin 32.5 = 47.857 m.
    /// Bottom-centre pixel (320, 512): 256 px below the axis, atan(256/1125)
    /// = 12.820 deg more, 23.320 deg below the horizon: distance
    /// 16.508 / tan(23.320) = 16.508 / 0.431075 = 38.295 m,
    /// north 32.298 m, east 20.576 m.
    /// Latitude: the meridional radius at 40.5638 N is
    /// M = 6 335 439 / (1 - 0.00669438 sin^2(40.5638))^1.5 = 6 362 438 m,
    /// 111 045 m per degree: 75.120 m north is 6.7649e-4 degree.
    #[test]
    fn ground_projection_matches_hand_computation() {
        let m = meta_of("H20T_a.jpg");
        let p = m.position.unwrap();
        let cam = Intrinsics::from_focal(13.5, 12.0, 640, 512);
        assert_eq!(cam.focal_px, 1125.0);
        let h = p.relative_altitude_m.unwrap();
        let c = project_to_ground(320.0, 256.0, &cam, &p, &m.pose, h).unwrap();
        assert!((c.north_m - 75.120).abs() < 0.002, "{c:?}");
        assert!((c.east_m - 47.857).abs() < 0.002, "{c:?}");
        assert!(
            (c.latitude_deg - (40.563_781_1 + 6.7649e-4)).abs() < 2e-8,
            "{c:?}"
        );
        let b = project_to_ground(320.0, 512.0, &cam, &p, &m.pose, h).unwrap();
        assert!((b.north_m - 32.298).abs() < 0.002, "{b:?}");
        assert!((b.east_m - 20.576).abs() < 0.002, "{b:?}");
    }

    /// Straight down (pitch -90, yaw 0, no roll) from 30 m with a 1000 px focal
    /// length: pixel (420, 256) of a 640x512 frame is 100 px right of centre,
    /// i.e. 30 * 100/1000 = 3 m to the right. With yaw 0 the top of the image
    /// points north, so "right" is east: (0 N, 3 E). Roll turns the image
    /// about the optical axis (here vertical): with roll 5 deg the centre pixel
    /// stays below the camera and the image's right axis turns from east
    /// towards south, (420, 256) lands at (-3 sin 5, 3 cos 5) = (-0.261 N, 2.989 E).
    #[test]
    fn nadir_and_roll_and_above_horizon() {
        let cam = Intrinsics {
            focal_px: 1000.0,
            cx: 320.0,
            cy: 256.0,
        };
        let pos = CameraPosition {
            latitude_deg: 0.0,
            longitude_deg: 0.0,
            absolute_altitude_m: None,
            relative_altitude_m: Some(30.0),
        };
        let mut pose = Pose {
            gimbal_yaw_deg: Some(0.0),
            gimbal_pitch_deg: Some(-90.0),
            gimbal_roll_deg: Some(0.0),
            flight_yaw_deg: None,
        };
        let g = project_to_ground(420.0, 256.0, &cam, &pos, &pose, 30.0).unwrap();
        assert!(
            g.north_m.abs() < 1e-9 && (g.east_m - 3.0).abs() < 1e-9,
            "{g:?}"
        );
        pose.gimbal_roll_deg = Some(5.0);
        let g = project_to_ground(320.0, 256.0, &cam, &pos, &pose, 30.0).unwrap();
        assert!(g.north_m.abs() < 1e-9 && g.east_m.abs() < 1e-9, "{g:?}");
        let g = project_to_ground(420.0, 256.0, &cam, &pos, &pose, 30.0).unwrap();
        assert!(
            (g.north_m + 0.2615).abs() < 1e-3 && (g.east_m - 2.9886).abs() < 1e-3,
            "{g:?}"
        );
        // The XT S fixture looks 19.9 deg up: its centre ray never meets the ground.
        pose = Pose {
            gimbal_pitch_deg: Some(19.9),
            gimbal_roll_deg: Some(0.0),
            ..pose
        };
        assert!(project_to_ground(320.0, 256.0, &cam, &pos, &pose, 37.7).is_none());
    }
}
