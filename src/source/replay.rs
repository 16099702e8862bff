//! Replay of a folder (or a list) of thermal image files as if they came from
//! a live camera: for testing the daemon end to end without hardware, and for
//! running the pipeline over survey images (R-JPEGs from a drone flight).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::{FrameSource, SourceEvent};
use crate::imageio::{self, LoadOptions};

/// `[source.replay]` configuration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReplayConfig {
    /// A folder of image files (played sorted by file name, files with
    /// unsupported extensions ignored, not recursive) or a single file.
    pub(crate) path: PathBuf,
    /// Frames per second; 0 plays as fast as the pipeline takes them.
    pub(crate) fps: f64,
    /// Start again from the first file after the last (TOML key `loop`);
    /// otherwise the source ends, and the daemon with it.
    #[serde(rename = "loop")]
    pub(crate) loop_forever: bool,
    /// degrees C = raw * `raw_scale` + `raw_offset` for 16-bit TIFFs of
    /// cameras whose scale pvtherm does not know (e.g. 0.04 and -273.15 for
    /// a T-linear FLIR Boson); both or neither.
    pub(crate) raw_scale: Option<f64>,
    /// See `raw_scale`.
    pub(crate) raw_offset: Option<f64>,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            path: PathBuf::new(),
            fps: 1.0,
            loop_forever: false,
            raw_scale: None,
            raw_offset: None,
        }
    }
}

impl ReplayConfig {
    /// Checks the values (for `check-config`, and again when the source
    /// opens): a rate whose period a clock can hold, and a path that holds
    /// files to play, as the daemon would find at start.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.path.as_os_str().is_empty() {
            bail!("[source.replay] path is not set: give a folder of images or one file");
        }
        if self.fps != 0.0 {
            crate::config_value::in_range(
                "[source.replay] fps",
                self.fps,
                0.001..=1000.0,
                " frames per second (or 0 = as fast as the model takes them)",
            )?;
        }
        list_files(&self.path).context("[source.replay] path")?;
        self.raw_scale()?;
        Ok(())
    }

    /// The scale and offset of 16-bit TIFFs, when configured (both or
    /// neither; [`super::SourceConfig::load_options`] puts them with the
    /// other load options).
    pub(crate) fn raw_scale(&self) -> anyhow::Result<Option<(f32, f32)>> {
        Ok(match (self.raw_scale, self.raw_offset) {
            (None, None) => None,
            (Some(scale), Some(offset)) => {
                if !(scale.is_finite() && scale != 0.0 && offset.is_finite()) {
                    bail!(
                        "[source.replay] raw_scale {scale} / raw_offset {offset}: the scale \
                         must be a non-zero number of kelvin per count"
                    );
                }
                Some((scale as f32, offset as f32))
            }
            _ => bail!(
                "[source.replay] raw_scale and raw_offset go together: set both \
                 (e.g. 0.04 and -273.15) or neither"
            ),
        })
    }
}

/// A [`FrameSource`] that plays image files in name order at a fixed rate.
/// Frames get increasing sequence numbers and capture time = now at emission
/// (so the daemon behaves as with a live camera); `origin` keeps the file path.
/// Unreadable files are logged and skipped (counted in `dropped_frames`).
pub(crate) struct ReplaySource {
    files: Vec<PathBuf>,
    period: Option<Duration>,
    loop_forever: bool,
    describe: String,
    next_index: usize,
    next_sequence: u64,
    last_emit: Option<Instant>,
    radiometric: bool,
    skipped: u64,
    /// Frames delivered in the current pass (a looping pass with none is fatal).
    emitted_this_pass: u64,
    /// How files are read (`[source] max_pixels`, `[source.replay]
    /// raw_scale` / `raw_offset`).
    options: LoadOptions,
}

impl ReplaySource {
    /// Opens the folder or file of `config.path`, to be read with `options`.
    /// Fails when the path does not exist or holds no supported files.
    pub(crate) fn new(config: &ReplayConfig, options: LoadOptions) -> anyhow::Result<Self> {
        config.validate()?;
        let files = list_files(&config.path)?;
        let mut source = Self::from_files(files, config.fps, config.loop_forever, options)?;
        source.describe = format!(
            "replay of {} ({} files)",
            config.path.display(),
            source.files.len()
        );
        Ok(source)
    }

    /// A replay of exactly these files, in this order, read with `options`.
    pub(crate) fn from_files(
        files: Vec<PathBuf>,
        fps: f64,
        loop_forever: bool,
        options: LoadOptions,
    ) -> anyhow::Result<Self> {
        if files.is_empty() {
            bail!("replay: no files to play");
        }
        let period = (fps > 0.0 && fps.is_finite()).then(|| Duration::from_secs_f64(1.0 / fps));
        // Radiometric until a frame says otherwise; set from each frame loaded.
        let radiometric = imageio::load_frame_with(&files[0], 0, &options)
            .map(|f| f.radiometry.is_absolute())
            .unwrap_or(false);
        Ok(ReplaySource {
            describe: format!("replay of {} files", files.len()),
            files,
            period,
            loop_forever,
            next_index: 0,
            next_sequence: 0,
            last_emit: None,
            radiometric,
            skipped: 0,
            emitted_this_pass: 0,
            options,
        })
    }

    /// Waits until the next frame is due at the configured rate.
    fn pace(&mut self) {
        if let (Some(period), Some(last)) = (self.period, self.last_emit) {
            let due = last + period;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.last_emit = Some(Instant::now());
    }
}

/// The supported files of a folder sorted by name, or the file itself; an
/// error when there is nothing to play.
fn list_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("replay path {}: cannot access", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files = imageio::image_files_in(path)?;
    if files.is_empty() {
        bail!(
            "replay folder {} has no supported image files ({})",
            path.display(),
            imageio::EXTENSIONS.join(", ")
        );
    }
    Ok(files)
}

impl FrameSource for ReplaySource {
    fn waits_for_consumer(&self) -> bool {
        // fps = 0 means "as fast as the pipeline takes them": every file is processed.
        self.period.is_none()
    }

    fn next_event(&mut self) -> anyhow::Result<SourceEvent> {
        loop {
            if self.next_index >= self.files.len() {
                if !self.loop_forever {
                    return Ok(SourceEvent::End);
                }
                if self.emitted_this_pass == 0 {
                    bail!(
                        "replay: none of the {} files could be read; giving up",
                        self.files.len()
                    );
                }
                self.next_index = 0;
                self.emitted_this_pass = 0;
            }
            let path = &self.files[self.next_index];
            self.next_index += 1;
            match imageio::load_frame_with(path, self.next_sequence, &self.options) {
                Ok(mut frame) => {
                    self.pace();
                    frame.captured_at = SystemTime::now();
                    self.next_sequence += 1;
                    self.emitted_this_pass += 1;
                    self.radiometric = frame.radiometry.is_absolute();
                    return Ok(SourceEvent::Frame(frame));
                }
                Err(e) => {
                    log::warn!("replay: skipping {e:#}");
                    self.skipped += 1;
                }
            }
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn is_radiometric(&self) -> bool {
        self.radiometric
    }

    fn dropped_frames(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn next_frame(s: &mut ReplaySource) -> crate::frame::Frame {
        match s.next_event().unwrap() {
            SourceEvent::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn plays_folder_in_name_order_then_ends() {
        let cfg = ReplayConfig {
            path: fixtures().join("pv/images"),
            fps: 0.0,
            ..ReplayConfig::default()
        };
        let mut s = ReplaySource::new(&cfg, LoadOptions::default()).unwrap();
        assert!(s.is_radiometric());
        let names = [
            "001R.jpg",
            "030R.jpg",
            "066R.jpg",
            "070R.jpg",
            "20180630_154039.jpg",
            "20180630_154531.jpg",
        ];
        for (i, name) in names.iter().enumerate() {
            let f = next_frame(&mut s);
            assert_eq!(f.sequence, i as u64);
            assert!(f.origin.ends_with(name), "{}", f.origin);
            assert!(f.captured_at.elapsed().unwrap() < Duration::from_secs(5));
        }
        assert!(matches!(s.next_event().unwrap(), SourceEvent::End));
    }

    #[test]
    fn loops_skips_bad_files_and_paces() {
        let lep = fixtures().join("lepton");
        let files = vec![
            lep.join("agc_off.160x120.y16le"),
            fixtures().join("bad/not_an_image.jpg"),
            lep.join("fox.160x120.y16le"),
        ];
        let mut s = ReplaySource::from_files(files, 50.0, true, LoadOptions::default()).unwrap();
        let start = Instant::now();
        let origins: Vec<String> = (0..5)
            .map(|_| next_frame(&mut s))
            .map(|f| f.origin)
            .collect();
        // 5 frames at 50 fps: at least 4 periods of 20 ms.
        assert!(start.elapsed() >= Duration::from_millis(80));
        let seqs_ok = origins
            .iter()
            .zip(["agc_off", "fox", "agc_off", "fox", "agc_off"])
            .all(|(o, n)| o.contains(n));
        assert!(seqs_ok, "{origins:?}");
        assert_eq!(s.dropped_frames(), 2);
    }

    #[test]
    fn sequence_numbers_increase_across_loops() {
        let files = vec![fixtures().join("lepton/fox.160x120.y16le")];
        let mut s = ReplaySource::from_files(files, 0.0, true, LoadOptions::default()).unwrap();
        let seqs: Vec<u64> = (0..3).map(|_| next_frame(&mut s).sequence).collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn all_unreadable_is_an_error_not_a_busy_loop() {
        let files = vec![fixtures().join("bad/not_an_image.jpg")];
        let mut s = ReplaySource::from_files(files, 0.0, true, LoadOptions::default()).unwrap();
        assert!(s.next_event().is_err());
    }

    #[test]
    fn the_configured_pixel_limit_reaches_the_replayed_files() {
        // `[source] max_pixels` below the fixtures' 640x512: the source the
        // configuration opens refuses each file (logged and counted).
        let text = format!(
            "kind = \"replay\"\nmax_pixels = 100000\n[replay]\npath = {:?}\nfps = 0\n",
            fixtures().join("pv/images")
        );
        let config: crate::source::SourceConfig = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        let mut s = config.open().unwrap();
        assert!(matches!(s.next_event().unwrap(), SourceEvent::End));
        assert_eq!(s.dropped_frames(), 6);
    }

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let cfg: ReplayConfig =
            toml::from_str("path = \"/data\"\nfps = 2.5\nloop = true\n").unwrap();
        assert_eq!(
            cfg,
            ReplayConfig {
                path: "/data".into(),
                fps: 2.5,
                loop_forever: true,
                ..ReplayConfig::default()
            }
        );
        // The 16-bit TIFF scale: both keys or neither.
        let cfg: ReplayConfig = toml::from_str("raw_scale = 0.04\nraw_offset = -273.15\n").unwrap();
        assert_eq!(cfg.raw_scale().unwrap(), Some((0.04, -273.15)));
        let cfg: ReplayConfig = toml::from_str("raw_scale = 0.04\n").unwrap();
        let err = cfg.raw_scale().unwrap_err().to_string();
        assert!(
            err.contains("[source.replay] raw_scale and raw_offset"),
            "{err}"
        );
        assert!(toml::from_str::<ReplayConfig>("lop = true").is_err());
        assert!(ReplayConfig::default().validate().is_err());
        let err = ReplaySource::new(
            &ReplayConfig {
                path: "/nonexistent/x".into(),
                ..Default::default()
            },
            LoadOptions::default(),
        );
        assert!(format!("{:#}", err.err().unwrap()).contains("/nonexistent/x"));
    }
}
