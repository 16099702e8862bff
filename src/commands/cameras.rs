//! `pvtherm cameras`: what V4L2 devices are there, what they offer, and which
//! of their formats pvtherm can use (and whether that gives temperatures).
//! The first thing to run when a camera does not work.

use std::path::PathBuf;

use pvtherm::source::v4l2::{describe_device, video_nodes, DeviceInfo};

/// Arguments of `pvtherm cameras`.
#[derive(clap::Args, Debug)]
pub(crate) struct CamerasArgs {
    /// Describe only this device node instead of every /dev/video*.
    #[arg(long)]
    pub(crate) device: Option<PathBuf>,
    /// Print JSON (an array of devices) for scripts instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Entry point of `pvtherm cameras`.
pub(crate) fn run(args: CamerasArgs) -> anyhow::Result<()> {
    let nodes = match args.device {
        Some(path) => vec![path],
        None => video_nodes(),
    };
    let devices: Vec<DeviceInfo> = nodes.iter().map(|p| describe_device(p)).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
    } else if devices.is_empty() {
        println!("no V4L2 devices (/dev/video*) found: is the camera plugged in, and is its driver (uvcvideo) loaded?");
    } else {
        for device in &devices {
            print!("{}", render_text(device));
        }
    }
    Ok(())
}

/// The human-readable description of one device.
fn render_text(d: &DeviceInfo) -> String {
    let mut out = format!("{}", d.path.display());
    if !d.driver.is_empty() {
        out += &format!(
            ": {} (driver {} {}, bus {})",
            d.card, d.driver, d.version, d.bus
        );
    }
    out.push('\n');
    if !d.capabilities.is_empty() {
        out += &format!("  capabilities: {}\n", d.capabilities.join(" "));
    }
    match (&d.auto_choice, &d.error) {
        (Some(choice), _) => {
            out += &format!("  pvtherm: usable; format = \"auto\" picks {choice}\n")
        }
        (None, Some(err)) => out += &format!("  pvtherm: not usable: {err}\n"),
        (None, None) => {
            out += "  pvtherm: not usable: no Y16, GREY or YUYV format (or the TC001 layout)\n"
        }
    }
    for f in &d.formats {
        out += &format!("  {:<4}  {}\n", f.fourcc, f.description);
        for s in &f.sizes {
            let intervals = if s.intervals.is_empty() {
                String::new()
            } else {
                format!("  interval {}", s.intervals.join(" "))
            };
            let usage = s.usage.map(|u| format!("  [{u}]")).unwrap_or_default();
            out += &format!("        {}{intervals}{usage}\n", s.size);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvtherm::source::v4l2::{FormatInfo, SizeInfo, SizeOffer};

    #[test]
    fn text_marks_usable_formats() {
        let d = DeviceInfo {
            path: "/dev/video0".into(),
            driver: "uvcvideo".into(),
            card: "PureThermal (fw:v1.3.0)".into(),
            bus: "usb-0000:01:00.0-1.2".into(),
            version: "6.1.0".into(),
            capabilities: vec!["VIDEO_CAPTURE".into(), "STREAMING".into()],
            usable: true,
            auto_choice: Some("Y16 160x120".into()),
            formats: vec![FormatInfo {
                fourcc: "Y16".into(),
                description: "16-bit Greyscale".into(),
                pvtherm_format: Some(pvtherm::formats::PixelFormat::Y16),
                sizes: vec![SizeInfo {
                    size: SizeOffer::Discrete {
                        width: 160,
                        height: 120,
                    },
                    intervals: vec!["1/9".into()],
                    usage: Some("radiometric Y16"),
                }],
            }],
            error: None,
        };
        let text = render_text(&d);
        assert!(text.contains("PureThermal"), "{text}");
        assert!(text.contains("picks Y16 160x120"), "{text}");
        assert!(
            text.contains("160x120  interval 1/9  [radiometric Y16]"),
            "{text}"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["formats"][0]["sizes"][0]["width"], 160);
        assert_eq!(json["formats"][0]["sizes"][0]["type"], "discrete");
        assert_eq!(json["formats"][0]["pvtherm_format"], "Y16");
    }
}
