//! The downloads of a batch besides its JSON: CSV (one row per module),
//! GeoJSON and KML (one placemark per grouped defect that has a position).
//! They are written from the report as it serialises (the `detect` schema),
//! so they say exactly what the JSON says, and each position says where it
//! came from.

use std::fmt::Write;

use serde_json::Value;

use crate::survey::SurveyReport;

/// Where a position in an export came from (the `position_source` column and
/// property).
const FROM_MODULE: &str = "module ground position (image GPS and pose, flat-ground projection)";
const FROM_IMAGE: &str = "image GPS (camera position)";
const FROM_FIXED: &str = "configured fixed position ([analysis.position])";

/// A WGS84 position and what it is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Located {
    latitude: f64,
    longitude: f64,
    source: &'static str,
}

/// One grouped defect as the geographic exports show it.
struct DefectPlace {
    event_id: String,
    anomaly_class: String,
    defect_score: f64,
    delta_t: Option<f64>,
    severity: Option<u64>,
    image: String,
    frames_seen: u64,
    at: Located,
}

/// The CSV: a header, then one row per module of every image.
pub(crate) fn csv(report: &SurveyReport) -> String {
    let value = serde_json::to_value(report).unwrap_or(Value::Null);
    let mut out = String::from(
        "image,module,defective,score,defect_score,anomaly_class,t_min,t_mean,t_max,unit,delta_t,severity,latitude,longitude,position_source\n",
    );
    for image in array(&value["images"]) {
        let name = text(&image["frame"]["origin"]);
        let unit = text(&image["unit"]);
        for module in array(&image["modules"]) {
            let t = &module["temperature"];
            let at = module_position(image, module);
            let row = [
                quote(&name),
                number(&module["index"]),
                module["defective"].as_bool().unwrap_or(false).to_string(),
                number(&module["score"]),
                number(&module["defect_score"]),
                quote(&text(&module["anomaly_class"])),
                number(&t["min"]),
                number(&t["mean"]),
                number(&t["max"]),
                unit.clone(),
                number(&module["delta_t"]),
                number(&module["severity"]["class"]),
                at.map(|a| a.latitude.to_string()).unwrap_or_default(),
                at.map(|a| a.longitude.to_string()).unwrap_or_default(),
                at.map(|a| quote(a.source)).unwrap_or_default(),
            ];
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

/// The GeoJSON: a FeatureCollection with a Point per located defect.
pub(crate) fn geojson(report: &SurveyReport) -> String {
    let features: Vec<Value> = defect_places(report)
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [d.at.longitude, d.at.latitude]},
                "properties": {
                    "event_id": d.event_id,
                    "anomaly_class": d.anomaly_class,
                    "defect_score": d.defect_score,
                    "delta_t": d.delta_t,
                    "severity": d.severity,
                    "image": d.image,
                    "frames_seen": d.frames_seen,
                    "position_source": d.at.source,
                }
            })
        })
        .collect();
    let collection = serde_json::json!({
        "type": "FeatureCollection",
        "features": features,
    });
    serde_json::to_string_pretty(&collection).unwrap_or_default()
}

/// The KML: a Placemark per located defect.
pub(crate) fn kml(report: &SurveyReport) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\">\n<Document>\n<name>pvtherm defects</name>\n",
    );
    for d in defect_places(report) {
        let _ = write!(
            out,
            "<Placemark>\n<name>{}</name>\n<description>{} (defect score {:.2}{}{}) in {}; position: {}</description>\n<ExtendedData>\n<Data name=\"event_id\"><value>{}</value></Data>\n<Data name=\"position_source\"><value>{}</value></Data>\n</ExtendedData>\n<Point><coordinates>{},{}</coordinates></Point>\n</Placemark>\n",
            xml(&d.anomaly_class),
            xml(&d.anomaly_class),
            d.defect_score,
            d.delta_t.map(|t| format!(", delta-T {t:.1}")).unwrap_or_default(),
            d.severity.map(|s| format!(", severity {s}")).unwrap_or_default(),
            xml(&d.image),
            xml(d.at.source),
            xml(&d.event_id),
            xml(d.at.source),
            d.at.longitude,
            d.at.latitude,
        );
    }
    out.push_str("</Document>\n</kml>\n");
    out
}

/// The grouped defects that have a position: the module's ground position
/// in the image of the best sighting when the image has one, else the
/// camera position the analysis attached (image GPS or the fixed position).
fn defect_places(report: &SurveyReport) -> Vec<DefectPlace> {
    let value = serde_json::to_value(report).unwrap_or(Value::Null);
    let images = array(&value["images"]);
    let mut places = Vec::new();
    for defect in array(&value["defects"]) {
        let best = &defect["best"];
        let image = images
            .iter()
            .find(|i| i["frame"]["sequence"] == best["sequence"]);
        let module = image.and_then(|i| {
            array(&i["modules"])
                .iter()
                .find(|m| m["bbox"] == best["bbox"])
                .copied()
        });
        let at = match (image, module) {
            (Some(i), Some(m)) => module_position(i, m),
            _ => None,
        }
        .or_else(|| attached_position(&defect["position"]));
        let Some(at) = at else { continue };
        places.push(DefectPlace {
            event_id: text(&defect["event_id"]),
            anomaly_class: text(&defect["anomaly_class"]),
            defect_score: defect["defect_score"].as_f64().unwrap_or(0.0),
            delta_t: defect["delta_t"].as_f64(),
            severity: defect["severity"]["class"].as_u64(),
            image: image
                .map(|i| text(&i["frame"]["origin"]))
                .unwrap_or_default(),
            frames_seen: defect["frames_seen"].as_u64().unwrap_or(0),
            at,
        });
    }
    places
}

/// A module's position: its own ground position, else the camera position
/// the image records.
fn module_position(image: &Value, module: &Value) -> Option<Located> {
    lat_lon(&module["ground_position"], FROM_MODULE)
        .or_else(|| lat_lon(&image["frame"]["camera_position"], FROM_IMAGE))
}

/// The camera position the analysis attached to a defect (`fixed` from the
/// configuration, anything else from the image).
fn attached_position(position: &Value) -> Option<Located> {
    let source = match position["source"].as_str() {
        Some("fixed") => FROM_FIXED,
        _ => FROM_IMAGE,
    };
    lat_lon(position, source)
}

/// `latitude` / `longitude` of an object, if both are there.
fn lat_lon(v: &Value, source: &'static str) -> Option<Located> {
    Some(Located {
        latitude: v["latitude"].as_f64()?,
        longitude: v["longitude"].as_f64()?,
        source,
    })
}

/// The elements of a JSON array (none for anything else).
fn array(v: &Value) -> Vec<&Value> {
    v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

/// A JSON string's text, or empty.
fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A JSON number as CSV text, empty for null or missing.
fn number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// A CSV field, quoted (RFC 4180).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Text escaped for XML content.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
