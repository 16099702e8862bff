//! The one TOML file that sets pvtherm up (`config/pvtherm.toml` documents
//! every key). Each section is a struct owned by the module it configures;
//! this module only composes them, reads the file and checks what spans
//! sections. Unknown keys are rejected, and errors name the file, the line
//! and the key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisConfig;
use crate::model::ModelConfig;
use crate::publish::{BrokerConfig, MqttConfig, OutboxConfig};
use crate::render::RenderOptions;
use crate::source::SourceConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Who this box is on the bus.
    pub device: DeviceConfig,
    /// Where frames come from.
    pub source: SourceConfig,
    /// Which models to run.
    pub model: ModelConfig,
    /// Temperatures, severity, tracking, position.
    pub analysis: AnalysisConfig,
    /// How frames flow from the source to the model.
    pub pipeline: PipelineConfig,
    /// What the daemon publishes besides detections, and how often.
    pub output: OutputConfig,
    /// How snapshots, `detect` overviews and thumbnails are drawn.
    pub render: RenderOptions,
    /// The MQTT broker to publish to.
    pub mqtt: MqttConfig,
    /// The durable on-disk queue of messages not yet acknowledged.
    pub outbox: OutboxConfig,
    /// An in-process broker (demo and tests; off by default).
    pub broker: BrokerConfig,
    /// Logging.
    pub logging: LoggingConfig,
    /// Settings the file writes in an old place, each with the new one: the
    /// daemon logs them once logging is up, `check-config` prints them.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[device]`: identity on the MQTT bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Device id: the second level of every topic. No `+`, `#` or `/`.
    pub id: String,
    /// First level of every topic.
    pub topic_prefix: String,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            id: "pvtherm-1".into(),
            topic_prefix: "pvtherm".into(),
        }
    }
}

/// `[pipeline]`: how much of the camera's frame rate to spend CPU on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Run the model on every n-th captured frame (1 = every frame).
    pub detect_every_n: u32,
    /// Upper bound on inferences per second (0 = as fast as the box can).
    pub max_fps: f32,
    /// Log a one-line summary per processed frame at info level (the demo does;
    /// a field box usually does not).
    pub frame_summary: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            detect_every_n: 1,
            max_fps: 0.0,
            frame_summary: false,
        }
    }
}

/// `[output]`: snapshots, thumbnails and stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Seconds between retained annotated snapshots (0 = never).
    pub snapshot_interval_s: f32,
    /// JPEG quality of snapshots and thumbnails (1..100).
    pub jpeg_quality: u8,
    /// Publish a JPEG thumbnail with every defect message.
    pub thumbnails: bool,
    /// Seconds between stats messages.
    pub stats_interval_s: f32,
    /// Publish a detections message also for frames without modules.
    pub publish_empty_frames: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            snapshot_interval_s: 10.0,
            jpeg_quality: 80,
            thumbnails: true,
            stats_interval_s: 30.0,
            publish_empty_frames: false,
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        // toml's error text carries the line, the column and the offending key.
        let mut config: Config = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        config
            .move_old_render_table()
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config
            .validate()
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        Ok(config)
    }

    /// Reads `[analysis.render]`, where files written before `[render]`
    /// existed keep the picture settings, as `[render]`, with a warning.
    fn move_old_render_table(&mut self) -> Result<()> {
        let Some(old) = self.analysis.render.take() else {
            return Ok(());
        };
        if self.render != RenderOptions::default() {
            bail!("[analysis.render] and [render] are both set: [analysis.render] is the old name of [render]; move its keys into [render]");
        }
        self.render = toml::Value::Table(old)
            .try_into()
            .map_err(|e| anyhow::anyhow!("[analysis.render]: {}", e.to_string().trim_end()))?;
        self.warnings.push(
            "[analysis.render] is now [render]: rename the table (read as [render] until then)"
                .into(),
        );
        Ok(())
    }

    /// Makes relative file names relative to the config file's folder, so a
    /// config works whatever the current directory is.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        };
        fix(&mut self.model.detector);
        fix(&mut self.model.classifier);
        self.source.resolve_paths(base);
    }

    /// Checks what serde cannot: ranges, and that named files exist.
    pub fn validate(&self) -> Result<()> {
        let id = &self.device.id;
        if id.is_empty() || id.contains(['+', '#', '/']) {
            bail!("[device] id = {id:?}: must be non-empty and contain no '+', '#' or '/' (it is a topic level)");
        }
        let prefix = &self.device.topic_prefix;
        if prefix.is_empty() || prefix.contains(['+', '#']) {
            bail!(
                "[device] topic_prefix = {prefix:?}: must be non-empty and contain no '+' or '#'"
            );
        }
        let m = &self.model;
        if !m.input_width.is_multiple_of(16)
            || !m.input_height.is_multiple_of(16)
            || m.input_width < 32
            || m.input_height < 32
        {
            bail!(
                "[model] input_width/input_height = {}x{}: must be multiples of 16, at least 32",
                m.input_width,
                m.input_height
            );
        }
        if !(1..=crate::model::MAX_THREADS).contains(&m.threads) {
            bail!(
                "[model] threads = {}: must be 1 to {} (1 = the inference thread alone{})",
                m.threads,
                crate::model::MAX_THREADS,
                if cfg!(feature = "threads") {
                    ""
                } else {
                    "; this build has no thread pool: rebuild with the `threads` cargo feature for more"
                }
            );
        }
        for (key, file) in [("detector", &m.detector), ("classifier", &m.classifier)] {
            if let Some(f) = file {
                if !f.is_file() {
                    bail!(
                        "[model] {key} = {:?}: no such model file",
                        f.display().to_string()
                    );
                }
            }
        }
        self.source.validate()?;
        self.analysis.validate().context("[analysis]")?;
        self.render.validate()?;
        self.mqtt.validate().context("[mqtt]")?;
        if self.pipeline.detect_every_n == 0 {
            bail!("[pipeline] detect_every_n must be at least 1");
        }
        if !(1..=100).contains(&self.output.jpeg_quality) {
            bail!(
                "[output] jpeg_quality = {}: must be 1..100",
                self.output.jpeg_quality
            );
        }
        if self.output.stats_interval_s <= 0.0 {
            bail!("[output] stats_interval_s must be positive");
        }
        if self.logging.level.parse::<log::LevelFilter>().is_err() {
            bail!(
                "[logging] level = {:?}: use error, warn, info, debug or trace",
                self.logging.level
            );
        }
        Ok(())
    }

    /// A few lines saying what this configuration will do.
    pub fn summary(&self) -> String {
        format!(
            "device {:?}, topics {}/{}/...\nmodel: {} / {}, input {}x{}",
            self.device.id,
            self.device.topic_prefix,
            self.device.id,
            self.model.detector_source().label(),
            self.model.classifier_source().label(),
            self.model.input_width,
            self.model.input_height,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_names_the_key_and_line() {
        let err = Config::parse(
            "[device]\nid = \"a\"\ntopic_prefx = \"x\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("topic_prefx"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("t.toml"), "{msg}");
    }

    #[test]
    fn shipped_config_is_current_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let assembled: String = [
            "head",
            "source.v4l2",
            "source.replay",
            "model",
            "analysis",
            "render",
            "pipeline",
            "mqtt",
            "outbox",
            "broker",
        ]
        .iter()
        .map(|s| std::fs::read_to_string(dir.join(format!("snippets/{s}.toml"))).unwrap())
        .collect();
        let shipped = std::fs::read_to_string(dir.join("pvtherm.toml")).unwrap();
        assert!(
            shipped == assembled,
            "config/pvtherm.toml is stale: run config/assemble.sh"
        );
        // Every documented key parses, with the documented defaults.
        let parsed = Config::parse(&shipped, &dir.join("pvtherm.toml")).unwrap();
        assert_eq!(parsed.device, DeviceConfig::default());
        assert_eq!(parsed.pipeline, PipelineConfig::default());
        assert_eq!(parsed.output, OutputConfig::default());
        assert_eq!(parsed.render, RenderOptions::default());
        assert_eq!(parsed.model, ModelConfig::default());
        // Every key of every section is documented (uncommented or as `# key =`).
        let defaults = toml::to_string(&Config::default()).unwrap();
        let mut table = "";
        for line in defaults.lines() {
            if line.starts_with('[') {
                table = line;
            }
            // class_floor is a map: its keys are anomaly classes, not settings.
            if !line.contains(" = ") || table.contains("class_floor") {
                continue;
            }
            let key = line.split(" = ").next().unwrap().trim();
            assert!(
                shipped.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} ="))),
                "key {key} is not documented in config/pvtherm.toml"
            );
        }
    }

    #[test]
    fn old_render_table_is_read_as_render_with_a_warning() {
        let old = Config::parse(
            "[analysis.render]\npalette = \"grey\"\nline_width = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(old.render.line_width, 3);
        assert_eq!(old.render.palette, crate::render::PaletteKind::Grey);
        assert!(
            old.warnings.iter().any(|w| w.contains("[render]")),
            "{:?}",
            old.warnings
        );
        let new = Config::parse(
            "[render]\npalette = \"grey\"\nline_width = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(new.render, old.render);
        assert!(new.warnings.is_empty());
        // Both at once is ambiguous; a bad value in the old table names it.
        let both = "[render]\nline_width = 3\n[analysis.render]\nline_width = 4\n";
        let err = format!(
            "{:#}",
            Config::parse(both, Path::new("t.toml")).unwrap_err()
        );
        assert!(err.contains("both set"), "{err}");
        let bad = "[analysis.render]\nline_width = 0\n";
        let err = format!("{:#}", Config::parse(bad, Path::new("t.toml")).unwrap_err());
        assert!(err.contains("render.line_width"), "{err}");
        let typo = "[analysis.render]\nline_widht = 2\n";
        let err = format!(
            "{:#}",
            Config::parse(typo, Path::new("t.toml")).unwrap_err()
        );
        assert!(
            err.contains("[analysis.render]") && err.contains("line_widht"),
            "{err}"
        );
    }

    #[test]
    fn zero_detector_threads_are_rejected() {
        let err = Config::parse("[model]\nthreads = 0\n", Path::new("t.toml")).unwrap_err();
        assert!(
            format!("{err:#}").contains("[model] threads = 0"),
            "{err:#}"
        );
        let two = Config::parse("[model]\nthreads = 2\n", Path::new("t.toml"));
        if cfg!(feature = "threads") {
            assert_eq!(two.unwrap().model.threads, 2);
        } else {
            // No pool compiled in: check-config says so instead of the start-up failing.
            let err = format!("{:#}", two.unwrap_err());
            assert!(err.contains("`threads` cargo feature"), "{err}");
        }
    }

    #[test]
    fn bad_device_id_is_rejected() {
        let err = Config::parse("[device]\nid = \"a/b\"\n", Path::new("t.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("[device] id"));
    }

    #[test]
    fn missing_model_file_is_named() {
        let err = Config::parse(
            "[model]\ndetector = \"nope.onnx\"\n",
            Path::new("/etc/pvtherm/t.toml"),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/etc/pvtherm/nope.onnx"),
            "{err:#}"
        );
    }
}
